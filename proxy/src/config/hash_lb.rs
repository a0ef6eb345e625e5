//! Consistent-hash load balancing (Envoy's `RING_HASH` and `MAGLEV`): a table built once per
//! cluster config from the endpoints' addresses and weights, mapping a request's 64-bit hash
//! to an endpoint. The same hash always maps to the same endpoint while the endpoint set is
//! unchanged; when an endpoint leaves, only the keys that mapped to it move (ring hash: to the
//! next point on the ring; maglev: about `1/n` of the table changes).
//!
//! Owns the tables and the hash function only; which key a request hashes is the route's
//! business (`config::policy::HashPolicy`), and which endpoints are eligible is the
//! cluster's.

use std::net::SocketAddr;

/// Envoy's defaults and bounds.
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
pub const DEFAULT_TABLE_SIZE: u64 = 65_537;

/// A stable 64-bit hash of bytes (FNV-1a, then a SplitMix64 finaliser for dispersion). The
/// same bytes give the same hash on every proxy and every run.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64's finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A table over a set of members (indices into the caller's endpoint list).
#[derive(Debug, Clone)]
pub enum HashTable {
    Ring(Ring),
    Maglev(Maglev),
}

impl HashTable {
    /// The members in the order the table prefers them for `hash`: the first is the owner;
    /// the next ones are where the key goes when earlier ones are unavailable.
    pub fn candidates(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let (first, len): (usize, usize) = match self {
            Self::Ring(r) => (r.position(hash), r.points.len()),
            Self::Maglev(m) => (0, m.table.len()),
        };
        (0..len).filter_map(move |i| match self {
            Self::Ring(r) => r.points.get((first + i) % len).map(|p| p.1),
            // Maglev has no order beyond the owner: probe with rehashed keys.
            Self::Maglev(m) => {
                let h = if i == 0 { hash } else { mix(hash ^ (i as u64)) };
                m.owner(h)
            }
        })
    }
}

/// Envoy's ring hash: every member gets points on a ring in proportion to its weight (at
/// least `min_size` points in all, at most [`MAX_RING_SIZE`]); a hash belongs to the first
/// point at or after it. Unlike Envoy, the ring is not normalised to `min_size`: the heaviest
/// member gets `min_size` points and the others their weight's share of that.
#[derive(Debug, Clone)]
pub struct Ring {
    /// (point, member), sorted by point.
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// `members`: (index, address, weight ≥ 1). Each member gets `min_size × weight / the
    /// largest weight` points, so its points depend on its own weight and not on how many
    /// members there are: a member leaving removes its points and moves nothing else (unless
    /// the ring had to be scaled down to [`MAX_RING_SIZE`]).
    pub fn new(members: &[(usize, SocketAddr, u32)], min_size: u64) -> Self {
        let max_weight = u64::from(members.iter().map(|m| m.2).max().unwrap_or(1).max(1));
        let min_size = min_size.max(1);
        let wanted: u64 = members
            .iter()
            .map(|m| (min_size * u64::from(m.2)).div_ceil(max_weight))
            .sum();
        let mut points = Vec::new();
        for (index, addr, weight) in members {
            let mut share = (min_size * u64::from(*weight)).div_ceil(max_weight);
            if wanted > MAX_RING_SIZE {
                share = share * MAX_RING_SIZE / wanted;
            }
            let key = addr.to_string();
            for i in 0..share.max(1) {
                points.push((hash64(format!("{key}_{i}").as_bytes()), *index));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    fn position(&self, hash: u64) -> usize {
        let i = self.points.partition_point(|p| p.0 < hash);
        if i == self.points.len() { 0 } else { i }
    }
}

/// Maglev: a lookup table of prime size filled by each member's permutation in turn
/// (weighted: a member takes a turn only while its share of the table is below its weight's
/// share); a hash owns slot `hash % size`.
#[derive(Debug, Clone)]
pub struct Maglev {
    table: Vec<usize>,
}

impl Maglev {
    /// `members`: (index, address, weight ≥ 1); `size` should be prime (Envoy's default
    /// 65537); it is raised to the next prime when it is not.
    pub fn new(members: &[(usize, SocketAddr, u32)], size: u64) -> Self {
        if members.is_empty() {
            return Self { table: Vec::new() };
        }
        let size = next_prime(size.max(members.len() as u64).max(7));
        let Ok(len) = usize::try_from(size) else {
            return Self { table: Vec::new() };
        };
        let perms: Vec<(u64, u64)> = members
            .iter()
            .map(|(_, addr, _)| {
                let key = addr.to_string();
                let offset = hash64(key.as_bytes()) % size;
                let skip = hash64(format!("{key}#skip").as_bytes()) % (size - 1) + 1;
                (offset, skip)
            })
            .collect();
        let max_weight = f64::from(members.iter().map(|m| m.2).max().unwrap_or(1).max(1));
        let mut next = vec![0u64; members.len()];
        let mut taken = vec![0u64; members.len()];
        let mut table = vec![usize::MAX; len];
        let mut filled = 0usize;
        let mut round = 0u64;
        while filled < len {
            round += 1;
            for (m, (index, _, weight)) in members.iter().enumerate() {
                // A member's target after `round` turns: round × weight / max weight.
                #[allow(clippy::cast_precision_loss)]
                let target = round as f64 * f64::from(*weight) / max_weight;
                #[allow(clippy::cast_precision_loss)]
                if (taken[m] as f64) >= target {
                    continue;
                }
                let (offset, skip) = perms[m];
                loop {
                    let slot = (offset + next[m] * skip) % size;
                    next[m] += 1;
                    // slot < size == len.
                    let slot = usize::try_from(slot).unwrap_or(0);
                    if table[slot] == usize::MAX {
                        table[slot] = *index;
                        taken[m] += 1;
                        filled += 1;
                        break;
                    }
                }
                if filled == len {
                    break;
                }
            }
        }
        Self { table }
    }

    fn owner(&self, hash: u64) -> Option<usize> {
        let len = self.table.len() as u64;
        if len == 0 {
            return None;
        }
        usize::try_from(hash % len)
            .ok()
            .and_then(|i| self.table.get(i).copied())
    }
}

fn next_prime(mut n: u64) -> u64 {
    while !is_prime(n) {
        n += 1;
    }
    n
}

/// Is `n` a prime (trial division; table sizes are small)?
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn members(n: usize) -> Vec<(usize, SocketAddr, u32)> {
        (0..n)
            .map(|i| {
                (
                    i,
                    format!("10.0.{}.{}:80", i / 200, i % 200 + 1)
                        .parse()
                        .unwrap(),
                    1,
                )
            })
            .collect()
    }

    fn owner(t: &HashTable, key: u64) -> usize {
        t.candidates(key).next().unwrap()
    }

    fn tables(m: &[(usize, SocketAddr, u32)]) -> [HashTable; 2] {
        [
            HashTable::Ring(Ring::new(m, DEFAULT_MIN_RING_SIZE)),
            HashTable::Maglev(Maglev::new(m, DEFAULT_TABLE_SIZE)),
        ]
    }

    #[test]
    fn the_same_key_always_lands_on_the_same_endpoint_and_keys_spread() {
        for t in tables(&members(4)) {
            let mut counts = [0usize; 4];
            for k in 0..4000u64 {
                let h = hash64(format!("user-{k}").as_bytes());
                let o = owner(&t, h);
                assert_eq!(o, owner(&t, h));
                counts[o] += 1;
            }
            // Each of 4 endpoints gets a fair share (1000 expected).
            assert!(
                counts.iter().all(|c| (600..=1400).contains(c)),
                "{counts:?}"
            );
        }
    }

    #[test]
    fn an_endpoint_leaving_moves_only_its_own_keys() {
        let all = members(5);
        let without: Vec<_> = all.iter().copied().filter(|m| m.0 != 2).collect();
        for (before, after) in tables(&all).into_iter().zip(tables(&without)) {
            let (mut moved, mut owned_by_2) = (0, 0);
            for k in 0..5000u64 {
                let h = hash64(&k.to_le_bytes());
                let (a, b) = (owner(&before, h), owner(&after, h));
                if a == 2 {
                    owned_by_2 += 1;
                } else if a != b {
                    moved += 1;
                }
            }
            assert!(owned_by_2 > 500, "{owned_by_2}");
            // Ring hash moves none of the others; maglev a small fraction.
            assert!(moved < 5000 / 20, "{moved} keys of other endpoints moved");
        }
    }

    #[test]
    fn weights_shape_the_shares() {
        let mut m = members(2);
        m[0].2 = 3;
        for t in tables(&m) {
            let zero = (0..4000u64)
                .filter(|k| owner(&t, hash64(&k.to_le_bytes())) == 0)
                .count();
            assert!((2600..=3400).contains(&zero), "{zero}");
        }
    }

    #[test]
    fn candidates_reach_every_member() {
        for t in tables(&members(3)) {
            let mut seen: Vec<usize> = t.candidates(42).take(2000).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen, [0, 1, 2]);
        }
    }
}
