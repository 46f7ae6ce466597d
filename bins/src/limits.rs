//! Open-file limit (`RLIMIT_NOFILE`): every socket is a descriptor, and the
//! usual soft limit of 1024 stops a run of 10,000 connections half-way. The
//! binaries raise their soft limit at start-up towards what they need, never
//! above the hard limit (only root may raise that), and say so when the hard
//! limit is too low.

use std::fmt;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors a process uses besides its connections: stdio, the poll,
/// wakers, the signal pipe, listeners, upstreams, output files.
pub const NOFILE_SPARE: u64 = 64;

/// Connections a server is sized for by default: fepbench's largest load,
/// `--connections 10000`.
pub const SERVER_CONNECTIONS_PLANNED: u64 = 10_000;

/// Highest soft limit asked for when the hard limit is unlimited (Linux's
/// default `fs.nr_open`; asking for more fails).
pub const NOFILE_CEILING: u64 = 1 << 20;

/// What a process asks of the open-file limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileGoal {
    /// Descriptors below which the process cannot do its job.
    pub need: u64,
    /// Soft limit to raise to if the hard limit allows (at least `need`).
    pub want: u64,
}

impl NofileGoal {
    /// A client that opens `connections` sockets: exactly what it needs.
    pub fn client(connections: u64) -> NofileGoal {
        let need = connections.saturating_add(NOFILE_SPARE);
        NofileGoal { need, want: need }
    }

    /// A server holding `fds_per_connection` descriptors per client (2 for
    /// a relay with one upstream socket per client): it needs room for
    /// [`SERVER_CONNECTIONS_PLANNED`] clients and wants all the hard limit
    /// allows, since it cannot know how many clients will come.
    pub fn server(fds_per_connection: u64) -> NofileGoal {
        let need = SERVER_CONNECTIONS_PLANNED
            .saturating_mul(fds_per_connection)
            .saturating_add(NOFILE_SPARE);
        NofileGoal {
            need,
            want: NOFILE_CEILING.max(need),
        }
    }
}

/// The new soft limit for a (soft, hard) pair (`None`: unlimited), or
/// `None` to leave it: `want`, capped by the hard limit and
/// [`NOFILE_CEILING`], and never below the current soft limit.
pub fn new_soft_limit(soft: Option<u64>, hard: Option<u64>, want: u64) -> Option<u64> {
    let cap = hard.unwrap_or(NOFILE_CEILING.max(want));
    let target = want.min(cap);
    match soft {
        Some(soft) if soft < target => Some(target),
        _ => None,
    }
}

/// What [`raise_nofile`] found and did.
#[derive(Debug)]
pub struct NofileRaise {
    /// The goal it worked towards.
    pub goal: NofileGoal,
    /// The soft limit before (`None`: unlimited).
    pub soft_before: Option<u64>,
    /// The soft limit now.
    pub soft: Option<u64>,
    /// The hard limit.
    pub hard: Option<u64>,
    /// Why raising failed, if it did (the soft limit is then unchanged).
    pub error: Option<std::io::Error>,
}

impl NofileRaise {
    /// Whether the soft limit now covers the need.
    pub fn enough(&self) -> bool {
        self.soft.is_none_or(|soft| soft >= self.goal.need)
    }

    /// Whether the soft limit was changed.
    pub fn raised(&self) -> bool {
        self.soft != self.soft_before
    }

    /// The one stderr line for a shortfall (`None` when there is none);
    /// `what` says what the need is for, e.g. "10000 connections".
    pub fn shortfall(&self, what: &str) -> Option<String> {
        if self.enough() {
            return None;
        }
        let need = self.goal.need;
        let limit = |l: Option<u64>| l.map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
        Some(match (&self.error, self.hard) {
            (None, Some(hard)) if hard < need => format!(
                "{what} need {need} open files but the hard limit (RLIMIT_NOFILE, `ulimit -Hn`) \
                 is {hard}; raise it, e.g. `ulimit -Hn {need}` as root or a nofile line in \
                 /etc/security/limits.conf"
            ),
            (error, hard) => format!(
                "{what} need {need} open files but the soft limit is {} (hard {}){}; \
                 raise it with `ulimit -n {need}`",
                limit(self.soft),
                limit(hard),
                error
                    .as_ref()
                    .map_or_else(String::new, |e| format!(" and raising it failed: {e}")),
            ),
        })
    }
}

impl fmt::Display for NofileRaise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = |l: Option<u64>| l.map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
        write!(
            f,
            "open files: soft limit {} -> {} (hard {}, need {})",
            limit(self.soft_before),
            limit(self.soft),
            limit(self.hard),
            self.goal.need
        )
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` towards `goal.want`, never
/// above the hard limit and never lowering it; returns what it did.
pub fn raise_nofile(goal: NofileGoal) -> NofileRaise {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let mut raise = NofileRaise {
        goal,
        soft_before: current,
        soft: current,
        hard: maximum,
        error: None,
    };
    if let Some(soft) = new_soft_limit(current, maximum, goal.want) {
        let new = Rlimit {
            current: Some(soft),
            maximum,
        };
        match setrlimit(Resource::Nofile, new) {
            Ok(()) => raise.soft = Some(soft),
            Err(e) => raise.error = Some(e.into()),
        }
    }
    raise
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_to_the_want_within_the_hard_limit() {
        // The usual desktop: 1024 soft, 524288 hard.
        assert_eq!(
            new_soft_limit(Some(1024), Some(524_288), 10_064),
            Some(10_064)
        );
        // Capped by the hard limit.
        assert_eq!(new_soft_limit(Some(1024), Some(4096), 10_064), Some(4096));
        // Never lowered, never touched when already enough.
        assert_eq!(new_soft_limit(Some(20_000), Some(20_000), 10_064), None);
        assert_eq!(new_soft_limit(Some(10_064), Some(20_000), 10_064), None);
        assert_eq!(new_soft_limit(Some(4096), Some(4096), 10_064), None);
        // Unlimited soft: nothing to do; unlimited hard: the want.
        assert_eq!(new_soft_limit(None, None, 10_064), None);
        assert_eq!(new_soft_limit(Some(1024), None, 10_064), Some(10_064));
        // A server wants everything, but not past the ceiling.
        let server = NofileGoal::server(1);
        assert_eq!(
            new_soft_limit(Some(1024), Some(20_000), server.want),
            Some(20_000)
        );
        assert_eq!(
            new_soft_limit(Some(1024), None, server.want),
            Some(NOFILE_CEILING)
        );
    }

    #[test]
    fn goals_count_the_spare_descriptors() {
        assert_eq!(
            NofileGoal::client(10_000),
            NofileGoal {
                need: 10_064,
                want: 10_064
            }
        );
        assert_eq!(NofileGoal::client(u64::MAX).need, u64::MAX);
        assert_eq!(NofileGoal::server(1).need, 10_064);
        assert_eq!(NofileGoal::server(2).need, 20_064);
        assert!(NofileGoal::server(2).want >= NofileGoal::server(2).need);
    }

    fn outcome(soft: u64, hard: u64, goal: NofileGoal) -> NofileRaise {
        let after = new_soft_limit(Some(soft), Some(hard), goal.want).unwrap_or(soft);
        NofileRaise {
            goal,
            soft_before: Some(soft),
            soft: Some(after),
            hard: Some(hard),
            error: None,
        }
    }

    #[test]
    fn a_hard_limit_below_the_need_is_one_line_with_the_numbers() {
        let raise = outcome(1024, 4096, NofileGoal::client(10_000));
        assert!(!raise.enough());
        assert!(raise.raised());
        let line = raise.shortfall("10000 connections").expect("a shortfall");
        assert!(!line.contains('\n'));
        for part in ["10000 connections", "10064", "4096", "ulimit -Hn 10064"] {
            assert!(line.contains(part), "{part:?} in {line:?}");
        }
        let fine = outcome(1024, 524_288, NofileGoal::client(10_000));
        assert!(fine.enough());
        assert_eq!(fine.soft, Some(10_064));
        assert_eq!(fine.shortfall("10000 connections"), None);
        assert_eq!(
            fine.to_string(),
            "open files: soft limit 1024 -> 10064 (hard 524288, need 10064)"
        );
    }

    #[test]
    fn raising_in_this_process_reaches_at_least_the_old_soft_limit() {
        // Asks for nothing new: whatever the machine's limits, this never
        // lowers the soft limit and never fails.
        let before = getrlimit(Resource::Nofile).current;
        let raise = raise_nofile(NofileGoal { need: 1, want: 1 });
        assert!(raise.error.is_none());
        assert!(raise.enough());
        assert_eq!(raise.soft, before);
        assert!(!raise.raised());
    }
}
