//! The acceptor's half of the hand-shake, shared by every accepting role.

use fep_core::{ConnId, Context, Fault, Service};

use crate::msg::{RoleHelloAck, RoleHelloReq, PROTOCOL_VERSION};

use crate::Role;

/// What an accepting port admits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Roles this port accepts.
    pub roles: Vec<Role>,
    /// The token a peer must present, when one is configured.
    pub token: Option<String>,
}

impl Admission {
    /// Checks a `RoleHelloReq` against the port: role, then version, then
    /// token. `Err(RoleRefused)` names which.
    pub fn check(&self, hello: &RoleHelloReq<'_>) -> Result<(), Fault> {
        let role = Role::from_u8(hello.role);
        if !role.is_some_and(|r| self.roles.contains(&r)) {
            return Err(Fault::RoleRefused {
                what: "role not accepted on this port",
            });
        }
        if hello.version != PROTOCOL_VERSION {
            return Err(Fault::RoleRefused {
                what: "unsupported protocol version",
            });
        }
        if self.token.as_deref().is_some_and(|t| t != hello.token) {
            return Err(Fault::RoleRefused {
                what: "wrong token",
            });
        }
        Ok(())
    }

    /// Handles a `RoleHelloReq` on `conn`: checks it, acks as `me` and marks
    /// the connection hand-shaked.
    pub fn accept<S: Service>(
        &self,
        cx: &mut Context<'_, S>,
        conn: ConnId,
        payload: &[u8],
        me: Role,
    ) -> Result<(), Fault> {
        let hello = RoleHelloReq::decode(payload)?;
        self.check(&hello)?;
        cx.set_handshaked(conn);
        let ack = RoleHelloAck {
            role: me.to_u8(),
            version: PROTOCOL_VERSION,
        };
        cx.send(conn, 7, |out| {
            ack.encode(out);
        });
        Ok(())
    }
}

/// The initiator's half: checks a `RoleHelloAck` and marks `conn`
/// hand-shaked. `expected` names the roles we dialled for; anything else,
/// or another version, is `ROLE_REFUSED` (`refused` says which peer).
pub fn accept_ack<S: Service>(
    cx: &mut Context<'_, S>,
    conn: ConnId,
    payload: &[u8],
    expected: &[Role],
    refused: &'static str,
) -> Result<(), Fault> {
    let ack = RoleHelloAck::decode(payload)?;
    if !Role::from_u8(ack.role).is_some_and(|r| expected.contains(&r)) {
        return Err(Fault::RoleRefused { what: refused });
    }
    if ack.version != PROTOCOL_VERSION {
        return Err(Fault::RoleRefused {
            what: "peer speaks another protocol version",
        });
    }
    cx.set_handshaked(conn);
    Ok(())
}
