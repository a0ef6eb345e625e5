//! The index of a blocking query, kept by Consul's documented rules
//! (API docs, "Blocking Queries", implementation details): the next request waits for
//! changes after the last `X-Consul-Index`; an index lower than the one held means the
//! state was reset (a restore, a new leader with older state) and the query starts over
//! from 0; an index of 0 is never sent back as a blocking index (it would not block).

/// What an answer did to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    Forward,
    /// The index went backwards: the next query is a fresh, non-blocking read.
    Reset,
}

/// The index to send with the next query (0: do not block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockingIndex(u64);

impl BlockingIndex {
    pub fn get(self) -> u64 {
        self.0
    }

    /// Takes the `X-Consul-Index` of an answer.
    pub fn advance(&mut self, returned: u64) -> Advance {
        if returned < self.0 {
            self.0 = 0;
            Advance::Reset
        } else {
            self.0 = returned.max(1);
            Advance::Forward
        }
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
}
