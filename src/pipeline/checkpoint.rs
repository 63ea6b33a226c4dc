//! STATE bookkeeping: record counts per state, and the queue of echoes that
//! wait for a commit.
//!
//! A state is a barrier. The writer hands every state here as it arrives;
//! the echo is rendered at once (the count is known then) but only leaves
//! through [`Checkpointer::release`], which the writer calls right after a
//! successful commit. States therefore come out in input order, and never
//! before the records that preceded them are durable.

use crate::pipeline::reader::Scope;
use crate::protocol;

#[derive(Debug)]
pub struct Checkpointer {
    /// Records per stream since that stream's previous STREAM state (or the
    /// previous GLOBAL/LEGACY state).
    since_stream_state: Vec<u64>,
    /// Records of all streams since the previous state of any kind.
    since_any_state: u64,
    pending: Vec<String>,
    released: u64,
}

impl Checkpointer {
    pub fn new(streams: usize) -> Self {
        Checkpointer {
            since_stream_state: vec![0; streams],
            since_any_state: 0,
            pending: Vec::new(),
            released: 0,
        }
    }

    pub fn on_record(&mut self, stream: usize) {
        self.since_stream_state[stream] += 1;
        self.since_any_state += 1;
    }

    /// Queues the echo of a state; `state` is the state object's range in
    /// `line`.
    pub fn on_state(&mut self, line: &str, state: std::ops::Range<usize>, scope: Scope) {
        let count = match scope {
            Scope::Stream(i) => std::mem::take(&mut self.since_stream_state[i]),
            Scope::OtherStream => 0,
            Scope::Global => {
                self.since_stream_state.iter_mut().for_each(|c| *c = 0);
                self.since_any_state
            }
        };
        self.since_any_state = 0;
        self.pending
            .push(protocol::state_echo(line, &line[state], count));
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Hands out the queued echoes, oldest first. Call only after a commit
    /// that covers every record received so far.
    pub fn release(&mut self) -> std::vec::Drain<'_, String> {
        self.released += self.pending.len() as u64;
        self.pending.drain(..)
    }

    /// Drops queued echoes whose records were rolled back.
    pub fn discard(&mut self) -> usize {
        let n = self.pending.len();
        self.pending.clear();
        n
    }

    pub fn released(&self) -> u64 {
        self.released
    }
}
