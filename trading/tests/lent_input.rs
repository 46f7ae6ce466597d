//! A gateway forwarding from a lent input (the real driver's path: a long
//! ping or pong is stamped in place and written from the read buffer, not
//! copied) puts the same bytes on the wire as one that copies, however the
//! writes are cut and whatever is left to be copied when the input is
//! settled.

use fep_core::Nanos;
use fep_trading::harness::GatewayRig;
use fep_trading::msg::{offset, read_u64, PerfPing, OP_PERF_PING, OP_PERF_PONG};

fn ping(seq: u64, pad_len: usize) -> Vec<u8> {
    let pad: Vec<u8> = (0..pad_len).map(|i| (i * 31 + 7) as u8).collect();
    let mut out = Vec::new();
    PerfPing::from_client(seq, Nanos(1), &pad).encode(OP_PERF_PING, &mut out);
    out
}

/// `input` read lent on `rig`'s client: what its upstream would be
/// written, as the vectored write's pieces.
fn read_lent<'a>(rig: &'a mut GatewayRig, input: &'a mut [u8]) -> Vec<&'a [u8]> {
    rig.worker
        .handle_read_lent(Nanos::from_millis(1), rig.client, input);
    let input: &'a [u8] = input;
    let rig: &'a GatewayRig = rig;
    rig.worker
        .transmit_chunks(rig.upstream, input, 64)
        .expect("the upstream is live")
        .collect()
}

#[test]
fn lent_and_copied_inputs_put_the_same_bytes_on_the_wire() {
    for pad_len in [0, 10, 255, 256, 1000, 4000] {
        for write_max in [1, 13, 70, 1000, usize::MAX] {
            let mut copied = GatewayRig::new();
            let mut lent = GatewayRig::new();
            let (mut up_c, mut down_c) = (Vec::new(), Vec::new());
            let (mut up_l, mut down_l) = (Vec::new(), Vec::new());
            for seq in 1..=3 {
                let ping = ping(seq, pad_len);
                let n_c = copied.round_trip_into(&ping, None, &mut up_c, &mut down_c);
                let n_l = lent.round_trip_into(&ping, Some(write_max), &mut up_l, &mut down_l);
                let case = format!("pad {pad_len}, writes of {write_max}, ping {seq}");
                assert_eq!(n_c, 2 * ping.len(), "{case}");
                assert_eq!(n_l, n_c, "{case}");
                assert_eq!(up_l, up_c, "{case}: upstream");
                assert_eq!(down_l, down_c, "{case}: client");
                // The pad went through unchanged, the stamps were written.
                assert_eq!(
                    down_l[offset::OPCODE..offset::OPCODE + 2],
                    OP_PERF_PONG.to_be_bytes()
                );
                assert_eq!(down_l[54..], ping[54..], "{case}: pad");
                assert_ne!(read_u64(&down_l, offset::T2), 0, "{case}: t2");
                assert_ne!(read_u64(&down_l, offset::T4), 0, "{case}: t4");
            }
        }
    }
}

#[test]
fn several_pings_in_one_lent_read_go_out_in_order() {
    let mut input = Vec::new();
    for seq in 1..=20 {
        input.extend_from_slice(&ping(seq, 1000));
    }
    for write_max in [1, 500, 5000, usize::MAX] {
        let mut copied = GatewayRig::new();
        let mut lent = GatewayRig::new();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        let client = copied.client;
        copied.read_into(client, &input, None, &mut want);
        let client = lent.client;
        lent.read_into(client, &input, Some(write_max), &mut got);
        assert_eq!(got.len(), input.len(), "writes of {write_max}");
        assert_eq!(got, want, "writes of {write_max}");
    }
}

#[test]
fn a_long_frame_is_written_from_the_input_and_a_short_one_copied() {
    for (pad_len, spliced) in [(1000, true), (201, false), (202, true)] {
        let mut rig = GatewayRig::new();
        let mut input = ping(1, pad_len);
        let want = {
            let mut copied = GatewayRig::new();
            copied
                .worker
                .handle_read(Nanos::from_millis(1), copied.client, &input);
            copied.worker.transmit_buf(copied.upstream).to_vec()
        };
        let chunks = read_lent(&mut rig, &mut input);
        assert_eq!(chunks.len(), 1, "pad {pad_len}");
        assert_eq!(chunks[0], want, "pad {pad_len}: stamped as a copy is");
        assert_eq!(
            chunks[0].as_ptr() == input.as_ptr(),
            spliced,
            "pad {pad_len}: written from the input"
        );
        rig.worker.settle_input(&input);
        assert_eq!(rig.worker.transmit_buf(rig.upstream), want);
    }
}

#[test]
fn pings_forwarded_back_to_back_are_one_piece_of_the_input() {
    let mut input = Vec::new();
    for seq in 1..=20 {
        input.extend_from_slice(&ping(seq, 1000));
    }
    let mut rig = GatewayRig::new();
    let chunks = read_lent(&mut rig, &mut input);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].len(), input.len());
    rig.worker.settle_input(&input);
}

#[test]
#[should_panic(expected = "settled another input")]
fn settling_another_input_than_the_one_lent_panics() {
    let mut rig = GatewayRig::new();
    let mut ping = ping(1, 1000);
    rig.worker
        .handle_read_lent(Nanos::from_millis(1), rig.client, &mut ping);
    rig.worker.settle_input(&ping.clone());
}
