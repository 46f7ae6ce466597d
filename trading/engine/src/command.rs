//! What goes in: the five requests of the contract's order entry, without
//! their wire header (the caller keeps `route` and the stamps).

/// The side of an order. A wire byte other than 1 or 2 has no `Side`: the
/// caller answers it `INVALID_ORDER` (no state changes for it, not even the
/// mark, so the engine need not see it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// Wire 1.
    Buy,
    /// Wire 2.
    Sell,
}

impl Side {
    /// The side a wire byte names, if any.
    pub fn from_wire(byte: u8) -> Option<Side> {
        match byte {
            1 => Some(Side::Buy),
            2 => Some(Side::Sell),
            _ => None,
        }
    }

    /// The wire byte.
    pub fn wire(self) -> u8 {
        match self {
            Side::Buy => 1,
            Side::Sell => 2,
        }
    }

    /// The side it trades against.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// Time in force. Like [`Side`], a bad wire byte is the caller's
/// `INVALID_ORDER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tif {
    /// Wire 1: what does not fill rests in the book.
    Day,
    /// Wire 2: what does not fill at once is canceled.
    Ioc,
}

impl Tif {
    /// The time in force a wire byte names, if any.
    pub fn from_wire(byte: u8) -> Option<Tif> {
        match byte {
            1 => Some(Tif::Day),
            2 => Some(Tif::Ioc),
            _ => None,
        }
    }

    /// The wire byte.
    pub fn wire(self) -> u8 {
        match self {
            Tif::Day => 1,
            Tif::Ioc => 2,
        }
    }
}

/// Places an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// The account (1 ..= accounts).
    pub account: u32,
    /// The request's id, which names the order while it is open; must be
    /// above the account's mark.
    pub cl_ord_id: u64,
    /// The instrument (1 ..= instruments).
    pub instrument: u32,
    /// Buy or sell.
    pub side: Side,
    /// Day or IOC.
    pub tif: Tif,
    /// Limit price in ticks (> 0).
    pub price: i64,
    /// Quantity (1 ..= 10^9).
    pub qty: u64,
}

/// Cancels an open order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancel {
    /// The account that owns the order.
    pub account: u32,
    /// The request's own id: echoed by the caller, never checked.
    pub cl_ord_id: u64,
    /// The name of the order to cancel.
    pub orig_cl_ord_id: u64,
}

/// Changes an open order's price and open quantity, and renames it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replace {
    /// The account that owns the order.
    pub account: u32,
    /// The request's id: the order's new name; must be above the mark.
    pub cl_ord_id: u64,
    /// The order's current name.
    pub orig_cl_ord_id: u64,
    /// The new limit price (> 0).
    pub price: i64,
    /// The new open quantity (1 ..= 10^9).
    pub qty: u64,
}

/// Asks for the aggregated levels of one book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookQuery {
    /// The instrument.
    pub instrument: u32,
    /// Levels per side wanted; at most [`BOOK_DEPTH_MAX`](crate::limits::BOOK_DEPTH_MAX) are given.
    pub depth: u16,
}

/// Asks for one balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceQuery {
    /// The account.
    pub account: u32,
    /// 0 for cash, `i` for instrument `i`'s units.
    pub asset: u32,
}

/// Any request, for callers that queue or journal them as one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// See [`NewOrder`].
    NewOrder(NewOrder),
    /// See [`Cancel`].
    Cancel(Cancel),
    /// See [`Replace`].
    Replace(Replace),
    /// See [`BookQuery`].
    BookQuery(BookQuery),
    /// See [`BalanceQuery`].
    BalanceQuery(BalanceQuery),
}

/// Bytes of the largest encoded command ([`Command::encode`]): a replace.
pub const COMMAND_ENCODED_LEN_MAX: usize = 1 + 4 + 8 + 8 + 8 + 8;

const TAG_NEW_ORDER: u8 = 1;
const TAG_CANCEL: u8 = 2;
const TAG_REPLACE: u8 = 3;
const TAG_BOOK_QUERY: u8 = 4;
const TAG_BALANCE_QUERY: u8 = 5;

/// Why bytes are not an encoded [`Command`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandDecodeError {
    /// The first byte names no command.
    Tag(u8),
    /// The length does not match the command's.
    Length {
        /// The tag read.
        tag: u8,
        /// The bytes given.
        len: usize,
    },
    /// A side or time-in-force byte out of its range.
    Field(&'static str),
}

impl std::fmt::Display for CommandDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tag(t) => write!(f, "no command has tag {t}"),
            Self::Length { tag, len } => write!(f, "command tag {tag} with {len} bytes"),
            Self::Field(what) => write!(f, "command field out of range: {what}"),
        }
    }
}

impl std::error::Error for CommandDecodeError {}

/// A cursor over fixed-size big-endian fields (lengths are checked first).
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_first_chunk::<N>().expect("length checked");
        self.0 = rest;
        *head
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
}

impl Command {
    /// Appends the command's stable byte encoding (the journal's record
    /// payload): a tag byte, then the fields in declaration order,
    /// big-endian. The encoding never changes meaning once written: a
    /// journal outlives the binary that wrote it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Command::NewOrder(o) => {
                out.push(TAG_NEW_ORDER);
                out.extend_from_slice(&o.account.to_be_bytes());
                out.extend_from_slice(&o.cl_ord_id.to_be_bytes());
                out.extend_from_slice(&o.instrument.to_be_bytes());
                out.push(o.side.wire());
                out.push(o.tif.wire());
                out.extend_from_slice(&o.price.to_be_bytes());
                out.extend_from_slice(&o.qty.to_be_bytes());
            }
            Command::Cancel(c) => {
                out.push(TAG_CANCEL);
                out.extend_from_slice(&c.account.to_be_bytes());
                out.extend_from_slice(&c.cl_ord_id.to_be_bytes());
                out.extend_from_slice(&c.orig_cl_ord_id.to_be_bytes());
            }
            Command::Replace(r) => {
                out.push(TAG_REPLACE);
                out.extend_from_slice(&r.account.to_be_bytes());
                out.extend_from_slice(&r.cl_ord_id.to_be_bytes());
                out.extend_from_slice(&r.orig_cl_ord_id.to_be_bytes());
                out.extend_from_slice(&r.price.to_be_bytes());
                out.extend_from_slice(&r.qty.to_be_bytes());
            }
            Command::BookQuery(q) => {
                out.push(TAG_BOOK_QUERY);
                out.extend_from_slice(&q.instrument.to_be_bytes());
                out.extend_from_slice(&q.depth.to_be_bytes());
            }
            Command::BalanceQuery(q) => {
                out.push(TAG_BALANCE_QUERY);
                out.extend_from_slice(&q.account.to_be_bytes());
                out.extend_from_slice(&q.asset.to_be_bytes());
            }
        }
    }

    /// Reads a command [`Command::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Command, CommandDecodeError> {
        let (&tag, body) = bytes.split_first().ok_or(CommandDecodeError::Tag(0))?;
        let want = match tag {
            TAG_NEW_ORDER => 4 + 8 + 4 + 1 + 1 + 8 + 8,
            TAG_CANCEL => 4 + 8 + 8,
            TAG_REPLACE => 4 + 8 + 8 + 8 + 8,
            TAG_BOOK_QUERY => 4 + 2,
            TAG_BALANCE_QUERY => 4 + 4,
            t => return Err(CommandDecodeError::Tag(t)),
        };
        if body.len() != want {
            return Err(CommandDecodeError::Length {
                tag,
                len: bytes.len(),
            });
        }
        let mut f = Fields(body);
        Ok(match tag {
            TAG_NEW_ORDER => Command::NewOrder(NewOrder {
                account: f.u32(),
                cl_ord_id: f.u64(),
                instrument: f.u32(),
                side: Side::from_wire(f.u8()).ok_or(CommandDecodeError::Field("side"))?,
                tif: Tif::from_wire(f.u8()).ok_or(CommandDecodeError::Field("tif"))?,
                price: f.i64(),
                qty: f.u64(),
            }),
            TAG_CANCEL => Command::Cancel(Cancel {
                account: f.u32(),
                cl_ord_id: f.u64(),
                orig_cl_ord_id: f.u64(),
            }),
            TAG_REPLACE => Command::Replace(Replace {
                account: f.u32(),
                cl_ord_id: f.u64(),
                orig_cl_ord_id: f.u64(),
                price: f.i64(),
                qty: f.u64(),
            }),
            TAG_BOOK_QUERY => Command::BookQuery(BookQuery {
                instrument: f.u32(),
                depth: f.u16(),
            }),
            _ => Command::BalanceQuery(BalanceQuery {
                account: f.u32(),
                asset: f.u32(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> [Command; 5] {
        [
            Command::NewOrder(NewOrder {
                account: 7,
                cl_ord_id: u64::MAX - 1,
                instrument: 3,
                side: Side::Sell,
                tif: Tif::Ioc,
                price: -5,
                qty: 1_000_000_000,
            }),
            Command::Cancel(Cancel {
                account: 1,
                cl_ord_id: 2,
                orig_cl_ord_id: 3,
            }),
            Command::Replace(Replace {
                account: 9,
                cl_ord_id: 10,
                orig_cl_ord_id: 8,
                price: i64::MAX,
                qty: 4,
            }),
            Command::BookQuery(BookQuery {
                instrument: 2,
                depth: 20,
            }),
            Command::BalanceQuery(BalanceQuery {
                account: 5,
                asset: 0,
            }),
        ]
    }

    #[test]
    fn every_command_decodes_to_itself() {
        for c in all() {
            let mut out = Vec::new();
            c.encode(&mut out);
            assert!(out.len() <= COMMAND_ENCODED_LEN_MAX);
            assert_eq!(Command::decode(&out), Ok(c));
        }
    }

    #[test]
    fn the_encoding_of_a_new_order_is_stable() {
        let mut out = Vec::new();
        all()[0].encode(&mut out);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "0100000007fffffffffffffffe000000030202fffffffffffffffb000000003b9aca00"
        );
    }

    #[test]
    fn truncated_or_unknown_bytes_are_refused() {
        for c in all() {
            let mut out = Vec::new();
            c.encode(&mut out);
            out.pop();
            assert!(matches!(
                Command::decode(&out),
                Err(CommandDecodeError::Length { .. })
            ));
        }
        assert_eq!(Command::decode(&[]), Err(CommandDecodeError::Tag(0)));
        assert_eq!(Command::decode(&[99, 0]), Err(CommandDecodeError::Tag(99)));
        let mut bad = Vec::new();
        all()[0].encode(&mut bad);
        bad[17] = 9; // the side byte
        assert_eq!(
            Command::decode(&bad),
            Err(CommandDecodeError::Field("side"))
        );
    }
}
