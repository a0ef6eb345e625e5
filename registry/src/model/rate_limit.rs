//! Our extension for local rate limiting: the `VirtualService` annotation
//! `traffic.hostmesh.io/local-rate-limit: "<tokens>/<interval>[,burst=<n>]"` (e.g. `10/1s`,
//! `600/1m,burst=50`) gives each HTTP route of the `VirtualService` its own token bucket in
//! every client proxy: `tokens` added every `interval`, holding at most `burst` (default
//! `tokens`). Requests beyond it are answered `429` with `retry-after`. Parsed once here; the
//! validation refuses a malformed value, the translation emits Envoy's local rate limit.

use std::time::Duration;

/// `<whole number><unit>` with unit `ms`, `s`, `m` or `h`.
fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

pub const LOCAL_RATE_LIMIT_ANNOTATION: &str = "traffic.hostmesh.io/local-rate-limit";

/// A token bucket, valid by construction (tokens and burst ≥ 1, interval ≥ 1 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalRateLimit {
    pub tokens: u32,
    pub interval: Duration,
    pub burst: u32,
}

impl LocalRateLimit {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split(',').map(str::trim);
        let rate = parts.next().unwrap_or_default();
        let (tokens, interval) = rate
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not <tokens>/<interval>[,burst=<n>]"))?;
        let tokens: u32 = tokens
            .trim()
            .parse()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| format!("tokens {tokens:?} must be a whole number above 0"))?;
        let interval = parse_duration(interval.trim())
            .filter(|d| *d >= Duration::from_millis(1))
            .ok_or_else(|| {
                format!(
                    "interval {interval:?} must be a whole number of ms, s, m or h, at least 1ms"
                )
            })?;
        let mut burst = tokens;
        for p in parts {
            match p.split_once('=') {
                Some(("burst", n)) => {
                    burst = n
                        .trim()
                        .parse()
                        .ok()
                        .filter(|b: &u32| *b >= tokens)
                        .ok_or_else(|| {
                            format!("burst {n:?} must be a whole number of at least {tokens}")
                        })?;
                }
                _ => return Err(format!("{p:?}: only burst=<n> may follow the rate")),
            }
        }
        Ok(Self {
            tokens,
            interval,
            burst,
        })
    }

    /// Seconds a refused client should wait: one fill interval, rounded up.
    pub fn retry_after_secs(&self) -> u64 {
        self.interval.as_secs() + u64::from(self.interval.subsec_nanos() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_bad_ones_say_why() {
        let r = LocalRateLimit::parse("600/1m, burst=650").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.tokens, r.interval, r.burst),
            (600, Duration::from_secs(60), 650)
        );
        let r = LocalRateLimit::parse("2/500ms").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.burst, r.retry_after_secs()), (2, 1));
        for bad in ["10", "0/1s", "10/0s", "10/1s,burst=5", "10/1s,x=1"] {
            assert!(LocalRateLimit::parse(bad).is_err(), "{bad}");
        }
    }
}
