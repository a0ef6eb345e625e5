//! Retry pauses shared by the sources that talk to a server: 100 ms doubling to a maximum,
//! with ±25 % jitter so that many clients do not retry in step.

use std::time::Duration;

use rand::Rng;

/// The next pause after a failure; [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    pub fn new(max: Duration) -> Self {
        Self {
            next: Self::FIRST,
            max,
        }
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    pub fn pause(&mut self) -> Duration {
        let base = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(rand::rng().random_range(0.75..1.25))
    }
}
