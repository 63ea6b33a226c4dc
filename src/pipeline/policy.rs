//! When the sync loop commits: a pure function of what it holds and the time.
//!
//! States wait for a commit, and a commit costs: DuckDB copies a small
//! transaction through the WAL and rewrites it at the next checkpoint. So the
//! loop commits when the uncompressed data it holds reaches the batch limit,
//! when the input has been quiet for [`IDLE_FLUSH`], or when states have
//! waited [`COMMIT_INTERVAL`] — up to [`MAX_COMMIT_DELAY`] while waiting
//! lets DuckDB write the busy streams' rows once (see
//! [`Sink::worth_waiting`](crate::pipeline::sink::Sink::worth_waiting)).
//! The commits that do not depend on time or size (a truncating stream that
//! completes, the end of the input) are the loop's own, in
//! [`sync`](crate::pipeline::sync).
//!
//! [`decide`] reads no clock: the time comes in as an argument, from a
//! [`Clock`], so tests can run hours of input in microseconds.

use std::time::{Duration, Instant};

/// When the input has been quiet this long, pending work is committed and
/// pending states echoed.
pub const IDLE_FLUSH: Duration = Duration::from_millis(200);
/// Under sustained input, states wait about this long for a commit ...
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// ... or up to this long while some stream is fast enough that fewer,
/// larger commits let DuckDB write its rows once (see
/// [`Sink::worth_waiting`](crate::pipeline::sink::Sink::worth_waiting)).
pub const MAX_COMMIT_DELAY: Duration = Duration::from_secs(10);

/// Where the sync loop reads the time.
pub trait Clock {
    fn now(&self) -> Instant;
}

/// The monotonic clock of the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// What the policy looks at.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInputs {
    /// When the last commit ended (or the loop started).
    pub last_commit: Instant,
    /// Some state waits for a commit to be echoed.
    pub states_pending: bool,
    /// Record bytes the open transaction holds in memory, uncompressed.
    pub buffered_bytes: u64,
    /// The batch limit (`batch_size_mb`) in bytes.
    pub batch_bytes: u64,
    /// Putting the commit off makes it cheaper
    /// ([`Sink::worth_waiting`](crate::pipeline::sink::Sink::worth_waiting)).
    pub waiting_pays: bool,
    /// No input came for [`IDLE_FLUSH`].
    pub idle: bool,
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Commit the open transaction, then echo the waiting states.
    Commit(Why),
    /// Keep the transaction open.
    Wait,
}

/// Why a commit is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The input paused.
    Idle,
    /// The transaction holds the batch limit.
    ByteLimit,
    /// States have waited long enough.
    StatesWaited,
}

/// Decides whether to commit now.
pub fn decide(inputs: PolicyInputs, now: Instant) -> Decision {
    if inputs.idle {
        return Decision::Commit(Why::Idle);
    }
    if inputs.buffered_bytes >= inputs.batch_bytes {
        return Decision::Commit(Why::ByteLimit);
    }
    let waited = now.saturating_duration_since(inputs.last_commit);
    let states_waited = inputs.states_pending
        && waited >= COMMIT_INTERVAL
        && (waited >= MAX_COMMIT_DELAY || !inputs.waiting_pays);
    if states_waited {
        Decision::Commit(Why::StatesWaited)
    } else {
        Decision::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);
    const LIMIT: u64 = 200 << 20;

    /// Busy input, one state waiting, a small transaction, at `t0`.
    fn busy(t0: Instant) -> PolicyInputs {
        PolicyInputs {
            last_commit: t0,
            states_pending: true,
            buffered_bytes: 1 << 20,
            batch_bytes: LIMIT,
            waiting_pays: false,
            idle: false,
        }
    }

    #[test]
    fn states_wait_at_most_the_commit_interval_when_waiting_does_not_pay() {
        let t0 = Instant::now();
        let inputs = busy(t0);
        assert_eq!(decide(inputs, t0), Decision::Wait);
        assert_eq!(decide(inputs, t0 + COMMIT_INTERVAL - MS), Decision::Wait);
        assert_eq!(
            decide(inputs, t0 + COMMIT_INTERVAL),
            Decision::Commit(Why::StatesWaited)
        );
    }

    #[test]
    fn states_wait_up_to_the_max_delay_while_waiting_pays() {
        let t0 = Instant::now();
        let inputs = PolicyInputs {
            waiting_pays: true,
            ..busy(t0)
        };
        assert_eq!(decide(inputs, t0 + COMMIT_INTERVAL), Decision::Wait);
        assert_eq!(decide(inputs, t0 + MAX_COMMIT_DELAY - MS), Decision::Wait);
        assert_eq!(
            decide(inputs, t0 + MAX_COMMIT_DELAY),
            Decision::Commit(Why::StatesWaited)
        );
    }

    #[test]
    fn without_states_time_alone_commits_nothing() {
        let t0 = Instant::now();
        let inputs = PolicyInputs {
            states_pending: false,
            ..busy(t0)
        };
        assert_eq!(decide(inputs, t0 + 100 * MAX_COMMIT_DELAY), Decision::Wait);
    }

    #[test]
    fn the_byte_limit_commits_at_once() {
        let t0 = Instant::now();
        for states_pending in [false, true] {
            let inputs = PolicyInputs {
                states_pending,
                waiting_pays: true,
                buffered_bytes: LIMIT,
                ..busy(t0)
            };
            assert_eq!(decide(inputs, t0), Decision::Commit(Why::ByteLimit));
            let below = PolicyInputs {
                buffered_bytes: LIMIT - 1,
                ..inputs
            };
            assert_eq!(decide(below, t0), Decision::Wait);
        }
    }

    #[test]
    fn an_idle_input_commits_at_once() {
        let t0 = Instant::now();
        let inputs = PolicyInputs {
            idle: true,
            states_pending: false,
            waiting_pays: true,
            ..busy(t0)
        };
        assert_eq!(decide(inputs, t0), Decision::Commit(Why::Idle));
    }

    /// The README promises a state "well within a second of a pause" and
    /// commits "about once a second" under slow sustained input. The tests
    /// of the sync loop check that these constants are what it waits for;
    /// these bounds keep the constants to the promise, so no test has to
    /// time the binary.
    const _: () = assert!(IDLE_FLUSH.as_millis() <= 500);
    const _: () = assert!(COMMIT_INTERVAL.as_millis() <= 1_000);
    const _: () = assert!(MAX_COMMIT_DELAY.as_millis() <= 10_000);

    #[test]
    fn a_clock_that_goes_back_counts_as_no_wait() {
        let t0 = Instant::now() + COMMIT_INTERVAL;
        assert_eq!(decide(busy(t0), t0 - COMMIT_INTERVAL), Decision::Wait);
    }

    proptest! {
        /// Whatever else holds, a waiting state is never kept past
        /// MAX_COMMIT_DELAY, nor the batch limit exceeded, and nothing is
        /// committed early without a reason.
        #[test]
        fn every_commit_has_its_reason_and_no_state_waits_too_long(
            waited_ms in 0u64..30_000,
            states_pending: bool,
            buffered_bytes in 0u64..(2 * LIMIT),
            waiting_pays: bool,
            idle: bool,
        ) {
            let t0 = Instant::now();
            let inputs = PolicyInputs {
                last_commit: t0,
                states_pending,
                buffered_bytes,
                batch_bytes: LIMIT,
                waiting_pays,
                idle,
            };
            let waited = Duration::from_millis(waited_ms);
            let decision = decide(inputs, t0 + waited);
            let overdue = states_pending && waited >= MAX_COMMIT_DELAY;
            if idle || buffered_bytes >= LIMIT || overdue {
                prop_assert!(matches!(decision, Decision::Commit(_)), "{decision:?}");
            }
            if let Decision::Commit(Why::StatesWaited) = decision {
                prop_assert!(states_pending && waited >= COMMIT_INTERVAL);
            }
            if !idle && buffered_bytes < LIMIT && (!states_pending || waited < COMMIT_INTERVAL) {
                prop_assert_eq!(decision, Decision::Wait);
            }
        }
    }
}
