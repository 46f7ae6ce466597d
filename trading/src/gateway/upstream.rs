//! The gateway's upstream sessions: dialing, the hand-shake's answer,
//! reconnect backoff, and the congestion that pauses the clients routed to
//! them (see "Backpressure" in the parent module).

use fep_core::frame::FrameWriter;
use fep_core::{ConnId, Context, Fault, InputGroup, Nanos, PeerId, WorkerId};

use crate::hello::accept_ack;
use crate::Role;

use super::{Gateway, Link, OP_UPSTREAM_CONGESTED};

impl Gateway {
    /// Whether new pings for worker `target`'s upstream should wait.
    pub(super) fn congested(&self, target: WorkerId) -> bool {
        let t = target.index();
        if target == self.worker {
            self.upstream_congested
        } else {
            self.remote_congested[t] || self.via_high[t]
        }
    }

    /// Pauses or resumes the clients routed to `target`'s upstream as the
    /// way there is congested or not (the core sends only the edges).
    pub(super) fn gate(&mut self, cx: &mut Context<'_, Self>, target: WorkerId) {
        let group = InputGroup(target.0);
        if self.congested(target) {
            cx.pause_group(group);
        } else {
            cx.resume_group(group);
        }
    }

    /// The credit with `target` moved: past half it is high, back at a
    /// quarter it is not (the gap keeps the group from flapping per ping).
    pub(super) fn update_via(&mut self, cx: &mut Context<'_, Self>, target: WorkerId) {
        let t = target.index();
        let via = self.via_bytes[t];
        let max = self.config.handoff_inflight_bytes_max;
        let high = if self.via_high[t] {
            via > max / 4
        } else {
            via >= max / 2
        };
        if high != self.via_high[t] {
            self.via_high[t] = high;
            self.gate(cx, target);
        }
    }

    /// Tells every other worker whether one of this worker's upstream
    /// sessions is congested, on each change.
    pub(super) fn announce_congestion(&mut self, cx: &mut Context<'_, Self>) {
        let congested = self.upstreams.iter().any(|u| u.congested);
        if self.upstream_congested == congested {
            return;
        }
        self.upstream_congested = congested;
        for t in 0..self.config.workers {
            let target = WorkerId(t);
            if target == self.worker {
                continue;
            }
            let handed = cx.handoff(target, 7, |out| {
                let mut w = FrameWriter::new(out, OP_UPSTREAM_CONGESTED);
                w.put_u8(u8::from(congested));
                w.finish();
            });
            assert!(handed, "the lane bound leaves room for control frames");
        }
        self.gate(cx, self.worker);
    }

    pub(super) fn on_ack(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        accept_ack(
            cx,
            conn,
            payload,
            &[Role::Exchange],
            "upstream is not an exchange",
        )?;
        let lane = Gateway::lane_at(cx, conn);
        let up = &mut self.upstreams[lane];
        up.link = Link::Up(conn);
        up.backoff = self.config.reconnect_backoff_min;
        self.stats.upstream_connects += 1;
        // Orders left in doubt by the loss are canceled before anything
        // else goes up this connection.
        self.flush_in_doubt(cx, lane);
        Ok(())
    }

    pub(super) fn on_error(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        _: &[u8],
    ) -> Result<(), Fault> {
        cx.close(conn);
        Ok(())
    }

    /// Dials upstream session `lane`; a full session table counts as a
    /// failed dial.
    pub(super) fn dial(&mut self, cx: &mut Context<'_, Self>, lane: usize) {
        match cx.connect(PeerId(0)) {
            Some(conn) => {
                self.upstreams[lane].link = Link::Dialing(conn);
                cx.data_mut(conn).expect("just dialed").lane =
                    u16::try_from(lane).expect("lanes fit u16");
            }
            None => self.schedule_reconnect(lane, cx.now()),
        }
    }

    pub(super) fn schedule_reconnect(&mut self, lane: usize, now: Nanos) {
        let up = &mut self.upstreams[lane];
        up.link = Link::Down {
            retry_at: now + up.backoff,
        };
        up.backoff = (up.backoff + up.backoff).min(self.config.reconnect_backoff_max);
    }
}
