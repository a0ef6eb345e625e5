//! The index of a blocking query, kept by Consul's documented rules
//! (API docs, "Blocking Queries", implementation details): the next request waits for
//! changes after the last `X-Consul-Index`; an index lower than the one held means the
//! state was reset (a restore, a new leader with older state) and the query starts over
//! from 0; an index of 0 is never sent back as a blocking index (it would not block).
//!
//! After a failed query the next one is a plain read (no index): a blocking retry of a
//! quiet service would wait up to `wait` (5 minutes by default) for a change before its
//! first answer, and the source would look unhealthy that long after Consul came back.
//! The held index stays, so an answer from a restored Consul is still seen going backwards.

/// What an answer did to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    Forward,
    /// The index went backwards: the next query is a fresh, non-blocking read.
    Reset,
}

/// The index to send with the next query (0: do not block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockingIndex {
    held: u64,
    /// The last query failed: read at once.
    read_now: bool,
}

impl BlockingIndex {
    pub fn get(self) -> u64 {
        if self.read_now { 0 } else { self.held }
    }

    /// Takes the `X-Consul-Index` of an answer.
    pub fn advance(&mut self, returned: u64) -> Advance {
        self.read_now = false;
        if returned < self.held {
            self.held = 0;
            Advance::Reset
        } else {
            self.held = returned.max(1);
            Advance::Forward
        }
    }

    /// A query failed: the next one does not block.
    pub fn failed(&mut self) {
        self.read_now = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_forward_resets_backwards_and_never_sends_zero() {
        let mut i = BlockingIndex::default();
        assert_eq!(i.get(), 0);
        assert_eq!(i.advance(10), Advance::Forward);
        assert_eq!(i.get(), 10);
        assert_eq!(i.advance(10), Advance::Forward, "a wait that timed out");
        assert_eq!(i.advance(4), Advance::Reset);
        assert_eq!(i.get(), 0);
        assert_eq!(i.advance(4), Advance::Forward);
        assert_eq!(i.get(), 4);
        let mut z = BlockingIndex::default();
        assert_eq!(z.advance(0), Advance::Forward);
        assert_eq!(z.get(), 1, "0 would not block");
    }

    #[test]
    fn a_failure_makes_the_next_query_a_plain_read_and_keeps_the_index() {
        let mut i = BlockingIndex::default();
        i.advance(10);
        i.failed();
        assert_eq!(i.get(), 0, "no blocking retry");
        assert_eq!(i.advance(10), Advance::Forward);
        assert_eq!(i.get(), 10, "blocking again after an answer");
        i.failed();
        assert_eq!(i.advance(3), Advance::Reset, "a restore is still noticed");
        assert_eq!(i.get(), 0);
    }
}
