//! The kernel's TCP counters around a leg: what the network stack did while
//! the processes ran (retransmits, reordering, zero windows). They are
//! system-wide (`/proc/net/snmp`, `/proc/net/netstat`), so they count
//! whatever else used TCP meanwhile; on a benchmark machine that is the leg.
//! They answer why a leg moved less than another: a single stream held back
//! by its congestion control shows retransmits and reordering that many
//! streams do not.

use serde::{Deserialize, Serialize};

/// The counters this module reads, in the kernel's names: (file, section,
/// name). `RetransSegs` is in `snmp`'s `Tcp:` section, the others in
/// `netstat`'s `TcpExt:`.
const COUNTERS: [(&str, &str, &str); 7] = [
    ("/proc/net/snmp", "Tcp:", "OutSegs"),
    ("/proc/net/snmp", "Tcp:", "RetransSegs"),
    ("/proc/net/netstat", "TcpExt:", "TCPFastRetrans"),
    ("/proc/net/netstat", "TcpExt:", "TCPLossProbes"),
    ("/proc/net/netstat", "TcpExt:", "TCPSACKReorder"),
    ("/proc/net/netstat", "TcpExt:", "TCPDSACKRecv"),
    ("/proc/net/netstat", "TcpExt:", "TCPToZeroWindowAdv"),
];

/// TCP counters over one leg (the difference of two readings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCounters {
    /// Segments sent (`Tcp: OutSegs`).
    pub out_segs: u64,
    /// Segments sent again (`Tcp: RetransSegs`).
    pub retrans_segs: u64,
    /// Fast retransmits (`TcpExt: TCPFastRetrans`).
    pub fast_retrans: u64,
    /// Tail loss probes sent (`TcpExt: TCPLossProbes`).
    pub loss_probes: u64,
    /// Reordering detected by SACK (`TcpExt: TCPSACKReorder`).
    pub sack_reorder: u64,
    /// Duplicate SACKs received, the mark of a spurious retransmit
    /// (`TcpExt: TCPDSACKRecv`).
    pub dsack_recv: u64,
    /// Receive windows that closed to zero (`TcpExt: TCPToZeroWindowAdv`).
    pub zero_window: u64,
}

impl TcpCounters {
    /// The counters now, or `None` where the files cannot be read (not
    /// Linux, no `/proc`).
    pub fn read() -> Option<TcpCounters> {
        let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
        let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
        TcpCounters::parse(&snmp, &netstat)
    }

    /// The counters from the texts of `/proc/net/snmp` and
    /// `/proc/net/netstat`: each section is a line of names followed by a
    /// line of values with the same prefix.
    pub fn parse(snmp: &str, netstat: &str) -> Option<TcpCounters> {
        let mut v = [0u64; COUNTERS.len()];
        for (slot, (file, section, name)) in v.iter_mut().zip(COUNTERS) {
            let text = if file.ends_with("snmp") {
                snmp
            } else {
                netstat
            };
            *slot = find(text, section, name)?;
        }
        let [out_segs, retrans_segs, fast_retrans, loss_probes, sack_reorder, dsack_recv, zero_window] =
            v;
        Some(TcpCounters {
            out_segs,
            retrans_segs,
            fast_retrans,
            loss_probes,
            sack_reorder,
            dsack_recv,
            zero_window,
        })
    }

    /// What happened between `self` (earlier) and `later`.
    pub fn since(self, later: TcpCounters) -> TcpCounters {
        TcpCounters {
            out_segs: later.out_segs.saturating_sub(self.out_segs),
            retrans_segs: later.retrans_segs.saturating_sub(self.retrans_segs),
            fast_retrans: later.fast_retrans.saturating_sub(self.fast_retrans),
            loss_probes: later.loss_probes.saturating_sub(self.loss_probes),
            sack_reorder: later.sack_reorder.saturating_sub(self.sack_reorder),
            dsack_recv: later.dsack_recv.saturating_sub(self.dsack_recv),
            zero_window: later.zero_window.saturating_sub(self.zero_window),
        }
    }
}

/// The value of `name` in `section` of a `/proc/net` statistics text.
fn find(text: &str, section: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(section));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let at = names.split_whitespace().position(|n| n == name);
        if let Some(at) = at {
            return values.split_whitespace().nth(at)?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 2 64\n\
        Tcp: RtoAlgorithm RtoMin OutSegs RetransSegs InErrs\n\
        Tcp: 1 200 481872193 253568 0\n\
        Udp: InDatagrams\nUdp: 5\n";
    const NETSTAT: &str = "TcpExt: SyncookiesSent TCPLossProbes TCPFastRetrans TCPSACKReorder TCPDSACKRecv TCPToZeroWindowAdv\n\
        TcpExt: 0 11 20 21 23 17\n\
        IpExt: InNoRoutes\nIpExt: 0\n";

    #[test]
    fn counters_are_found_by_name_in_their_section() {
        let c = TcpCounters::parse(SNMP, NETSTAT).expect("every counter is there");
        assert_eq!(
            c,
            TcpCounters {
                out_segs: 481_872_193,
                retrans_segs: 253_568,
                fast_retrans: 20,
                loss_probes: 11,
                sack_reorder: 21,
                dsack_recv: 23,
                zero_window: 17,
            }
        );
    }

    #[test]
    fn a_missing_counter_reads_as_none() {
        let netstat = NETSTAT.replace("TCPDSACKRecv", "TCPSomethingElse");
        assert_eq!(TcpCounters::parse(SNMP, &netstat), None);
        assert_eq!(TcpCounters::parse("", NETSTAT), None);
    }

    #[test]
    fn a_leg_is_the_difference_of_two_readings() {
        let before = TcpCounters::parse(SNMP, NETSTAT).unwrap();
        let after = TcpCounters {
            out_segs: before.out_segs + 1000,
            retrans_segs: before.retrans_segs + 7,
            ..before
        };
        let leg = before.since(after);
        assert_eq!(leg.out_segs, 1000);
        assert_eq!(leg.retrans_segs, 7);
        assert_eq!(leg.dsack_recv, 0);
        // Counters never run backwards; a reset reads as nothing.
        assert_eq!(after.since(before).out_segs, 0);
    }

    #[test]
    fn this_machine_has_them() {
        // Linux with /proc (CI runs there): the real files parse.
        if std::path::Path::new("/proc/net/netstat").exists() {
            assert!(TcpCounters::read().is_some());
        }
    }
}
