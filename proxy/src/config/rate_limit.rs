//! A local rate limit: Envoy's token bucket (`tokens_per_fill` every `fill_interval`, at most
//! `max_tokens`, starting full), shared by the routes of one virtual host in this proxy.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::policy::HeaderEdits;

#[derive(Debug)]
pub struct TokenBucket {
    max_tokens: u32,
    per_fill: u32,
    interval: Duration,
    /// (tokens left, when the next fill is due).
    state: Mutex<(u32, Instant)>,
    pub(crate) response_headers: HeaderEdits,
}

impl TokenBucket {
    pub(crate) fn new(
        max_tokens: u32,
        per_fill: u32,
        interval: Duration,
        response_headers: HeaderEdits,
    ) -> Self {
        Self {
            max_tokens,
            per_fill,
            interval,
            state: Mutex::new((max_tokens, Instant::now() + interval)),
            response_headers,
        }
    }

    /// Takes a token; `false` when none is left (answer 429).
    pub fn take(&self) -> bool {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update: the counts are
        // still numbers, so keep going.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, next) = &mut *state;
        if now >= *next {
            let fills = 1 + (now - *next).as_nanos() / self.interval.as_nanos().max(1);
            let fills = u32::try_from(fills).unwrap_or(u32::MAX);
            *tokens = tokens
                .saturating_add(fills.saturating_mul(self.per_fill))
                .min(self.max_tokens);
            *next += self.interval.saturating_mul(fills);
        }
        if *tokens == 0 {
            return false;
        }
        *tokens -= 1;
        true
    }

    pub fn response_headers(&self) -> &HeaderEdits {
        &self.response_headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_empties_then_refills_by_interval() {
        let b = TokenBucket::new(2, 1, Duration::from_millis(50), HeaderEdits::default());
        assert!(b.take() && b.take());
        assert!(!b.take());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.take());
        assert!(!b.take());
    }
}
