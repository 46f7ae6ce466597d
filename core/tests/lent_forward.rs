//! `Context::forward` from a lent input, with a service that forwards each
//! frame to two connections with different stamps and opcodes: the bytes
//! each connection gets are what copying gives, whether they go out while
//! the input is lent (the vectored write's pieces) or after it is settled.

use fep_core::{
    ConnId, Context, Fault, Handler, Nanos, Origin, Service, Session, StateSet, Worker,
    WorkerConfig, WorkerId,
};

const OP_DATA: u16 = 7;
/// The stamp's place in a frame: just after the header.
const STAMP_AT: usize = 6;

/// Forwards every frame from the first connection to the others, each
/// with its own stamp (the target's position, 1, 2, ...) and its own
/// opcode (`OP_DATA` plus the position: every forward rewrites it).
#[derive(Default)]
struct Tee {
    conns: Vec<ConnId>,
}

impl Tee {
    fn on_data(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        for (i, &to) in self.conns.iter().enumerate().filter(|&(_, &c)| c != conn) {
            let opcode = OP_DATA + i as u16;
            assert!(cx.forward(to, opcode, payload, &[(STAMP_AT, i as u64)]));
        }
        Ok(())
    }
}

impl Service for Tee {
    type Data = ();
    const HANDLERS: &'static [Handler<Self>] = &[Handler {
        opcode: OP_DATA,
        allowed: StateSet::ACCEPTED,
        handle: Tee::on_data,
    }];

    fn on_open(&mut self, _: &mut Context<'_, Self>, conn: ConnId, _: Origin) {
        self.conns.push(conn);
    }

    fn on_close(&mut self, _: &mut Context<'_, Self>, _: ConnId, _: Session<()>) {}
}

fn frame(fill: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(2 + len).unwrap().to_be_bytes());
    out.extend_from_slice(&OP_DATA.to_be_bytes());
    out.extend(std::iter::repeat_n(fill, len));
    out
}

/// A tee with three connections; returns it and them.
fn tee() -> (Worker<Tee>, [ConnId; 3]) {
    let now = Nanos::from_micros(1);
    let mut w = Worker::new(WorkerId(0), WorkerConfig::default(), Tee::default());
    w.start(now);
    let conns = [(); 3].map(|()| w.handle_accepted(now).expect("room"));
    (w, conns)
}

#[test]
fn a_frame_forwarded_twice_from_a_lent_input_keeps_each_copy_s_stamps() {
    let mut input = frame(0xaa, 300);
    input.extend_from_slice(&frame(0xbb, 40));
    input.extend_from_slice(&frame(0xcc, 500));
    let now = Nanos::from_micros(2);

    let (mut copied, [from, ..]) = tee();
    copied.handle_read(now, from, &input);

    let (mut lent, [from, to_b, to_c]) = tee();
    let mut buf = input.clone();
    lent.handle_read_lent(now, from, &mut buf);
    for (i, to) in [(1u64, to_b), (2, to_c)] {
        let want = copied.transmit_buf(to).to_vec();
        let got: Vec<u8> = lent
            .transmit_chunks(to, &buf, 64)
            .expect("live")
            .flatten()
            .copied()
            .collect();
        assert_eq!(got, want, "to connection {i}, while lent");
        // Every frame carries this connection's opcode and stamp.
        let mut at = 0;
        while at < got.len() {
            let len = u32::from_be_bytes(got[at..at + 4].try_into().unwrap()) as usize;
            assert_eq!(got[at + 4..at + 6], (OP_DATA + i as u16).to_be_bytes());
            assert_eq!(got[at + STAMP_AT..at + STAMP_AT + 8], i.to_be_bytes());
            at += 4 + len;
        }
    }
    // Only the first connection's frames were long enough and first to
    // take them: its output is pieces of the input.
    assert!(lent.transmit_is_spliced(to_b));
    assert!(!lent.transmit_is_spliced(to_c));
    lent.settle_input(&buf);
    for to in [to_b, to_c] {
        assert_eq!(lent.transmit_buf(to), copied.transmit_buf(to), "settled");
    }
}
