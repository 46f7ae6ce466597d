//! A worker's deadline with nanosecond resolution: a `timerfd` in the poll.
//!
//! `epoll_wait` takes its timeout in whole milliseconds, and mio rounds a
//! shorter one up to 1 ms. A deadline 40 µs away (an open-loop send, a
//! handoff retry) would fire up to a millisecond late, and that lateness
//! would land in the measured latency. So the loop sleeps without a timeout
//! and this timer, armed at the absolute deadline on CLOCK_MONOTONIC (the
//! clock of [`monotonic_now`](crate::clock::monotonic_now)), makes the poll
//! return on time.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use fep_core::Nanos;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

/// One-shot timer at an absolute CLOCK_MONOTONIC time, readable in the poll
/// when it expires.
#[derive(Debug)]
pub(crate) struct Timer {
    fd: OwnedFd,
    /// The deadline the kernel holds, until it fires or is replaced.
    armed: Option<Nanos>,
}

impl Timer {
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Timer { fd, armed: None })
    }

    /// Makes the poll return at `at` or earlier. An armed deadline at or
    /// before `at` is kept: it wakes the loop, which then arms the next one
    /// (deadlines are checked, so an early wake-up only costs a look). So a
    /// deadline that keeps moving later (a recheck `now + 10 ms`) costs one
    /// syscall per expiry, not one per poll. An earlier deadline replaces
    /// the armed one (one syscall). A deadline dropped by the caller is
    /// left armed for the same reason.
    pub(crate) fn arm(&mut self, at: Nanos) -> io::Result<()> {
        if self.armed.is_some_and(|armed| armed <= at) {
            return Ok(());
        }
        let spec = Itimerspec {
            it_interval: timespec(Nanos::ZERO),
            // An all-zero value would disarm; the clock is far past 0 anyway.
            it_value: timespec(Nanos(at.0.max(1))),
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::ABSTIME, &spec)?;
        self.armed = Some(at);
        Ok(())
    }

    /// The timer's event arrived: takes the expiry count so the next expiry
    /// is a new edge, and forgets the deadline.
    pub(crate) fn expired(&mut self) {
        let mut count = [0u8; 8];
        // Nothing to read (a stale event) is `EAGAIN`; either way the
        // timer is idle now.
        let _ = rustix::io::read(&self.fd, &mut count);
        self.armed = None;
    }
}

fn timespec(at: Nanos) -> Timespec {
    const NANOS_PER_SEC: u64 = 1_000_000_000;
    Timespec {
        tv_sec: i64::try_from(at.0 / NANOS_PER_SEC).unwrap_or(i64::MAX),
        // Below 1e9: fits every platform's `c_long`.
        tv_nsec: (at.0 % NANOS_PER_SEC) as _,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mio::{Events, Poll};

    use super::*;
    use crate::clock::monotonic_now;

    const TIMER: Token = Token(7);

    /// Waits for the timer's event; the time it came at.
    fn wait(poll: &mut Poll, timer: &mut Timer) -> Nanos {
        let mut events = Events::with_capacity(4);
        loop {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .expect("poll");
            assert!(!events.is_empty(), "the timer never fired");
            if events.iter().any(|e| e.token() == TIMER) {
                timer.expired();
                return monotonic_now();
            }
        }
    }

    #[test]
    fn fires_at_a_sub_millisecond_deadline_not_on_the_next_millisecond() {
        let mut poll = Poll::new().expect("poll");
        let mut timer = Timer::new(poll.registry(), TIMER).expect("timerfd");
        let mut lateness = Vec::new();
        for _ in 0..20 {
            let at = monotonic_now() + Nanos::from_micros(200);
            timer.arm(at).expect("arm");
            let fired = wait(&mut poll, &mut timer);
            assert!(fired >= at, "fired before its deadline");
            lateness.push(fired.0 - at.0);
        }
        lateness.sort_unstable();
        // A shared VM can delay any one wake-up; the median cannot be a
        // millisecond late unless the deadline was rounded up to one.
        let median = Duration::from_nanos(lateness[lateness.len() / 2]);
        assert!(
            median < Duration::from_micros(700),
            "median lateness {median:?}: rounded to the millisecond?"
        );
    }

    #[test]
    fn a_new_deadline_replaces_the_armed_one_and_fires_again() {
        let mut poll = Poll::new().expect("poll");
        let mut timer = Timer::new(poll.registry(), TIMER).expect("timerfd");
        let far = monotonic_now() + Nanos::from_millis(60_000);
        timer.arm(far).expect("arm");
        let near = monotonic_now() + Nanos::from_micros(100);
        timer.arm(near).expect("re-arm");
        assert!(wait(&mut poll, &mut timer) >= near);
        // Edge-triggered: after `expired` a second deadline is a new edge.
        let next = monotonic_now() + Nanos::from_micros(100);
        timer.arm(next).expect("arm again");
        assert!(wait(&mut poll, &mut timer) >= next);
    }

    #[test]
    fn a_later_deadline_keeps_the_earlier_armed_one() {
        let mut poll = Poll::new().expect("poll");
        let mut timer = Timer::new(poll.registry(), TIMER).expect("timerfd");
        let near = monotonic_now() + Nanos::from_micros(200);
        timer.arm(near).expect("arm");
        timer
            .arm(near + Nanos::from_millis(60_000))
            .expect("a later deadline");
        // The near one still fires: nothing re-armed it a minute out.
        let fired = wait(&mut poll, &mut timer);
        assert!(fired >= near);
        assert!(Duration::from_nanos(fired.0 - near.0) < Duration::from_secs(5));
    }

    #[test]
    fn a_deadline_in_the_past_fires_at_once() {
        let mut poll = Poll::new().expect("poll");
        let mut timer = Timer::new(poll.registry(), TIMER).expect("timerfd");
        let before = monotonic_now();
        timer.arm(Nanos(1)).expect("arm");
        let fired = wait(&mut poll, &mut timer);
        assert!(Duration::from_nanos(fired.0 - before.0) < Duration::from_secs(1));
    }
}
