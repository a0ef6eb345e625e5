//! Automatic virtual IPs for services that declare no address, from Istio's range
//! `240.240.0.0/16` (class E, never routed), so that the agent's DNS can answer for them and
//! the outbound listener can recognise their traffic.
//!
//! **Stability.** A host's address is derived from its name alone: the 64-bit FNV-1a hash of
//! the host name picks a slot among the 65 534 usable addresses (`240.240.0.1` to
//! `240.240.255.254`). Only when two present hosts hash to the same slot does the later one
//! in sorted order probe forward to the next free slot. So a host keeps its address across
//! snapshots and restarts of the control server (and across replicas) whatever else is added
//! or removed, except in the rare case where a newly added host collides with it and sorts
//! before it. Only IPv4 is allocated for now (Istio also allocates from `2001:2::/48`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;

/// Number of usable addresses in the range (the all-zeros and all-ones hosts are skipped).
const SLOTS: u32 = 65_534;
const BASE: u32 = u32::from_be_bytes([240, 240, 0, 0]);

/// 64-bit FNV-1a: small, fixed, and the same on every platform and Rust release (unlike the
/// standard library's hasher).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The preferred slot of a host, before probing.
fn slot(host: &str) -> u32 {
    // The remainder is below SLOTS, so it fits in a u32.
    u32::try_from(fnv1a(host) % u64::from(SLOTS)).unwrap_or(0)
}

fn address(slot: u32) -> Ipv4Addr {
    Ipv4Addr::from(BASE + 1 + slot)
}

/// Allocates an address to each host. Hosts beyond the size of the range get none.
pub fn allocate<'a>(hosts: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Ipv4Addr> {
    let sorted: BTreeSet<&str> = hosts.into_iter().collect();
    let mut taken = HashSet::new();
    let mut out = BTreeMap::new();
    for host in sorted {
        if taken.len() >= SLOTS as usize {
            tracing::warn!(host, "no virtual IP left in 240.240.0.0/16");
            break;
        }
        let mut s = slot(host);
        while !taken.insert(s) {
            s = (s + 1) % SLOTS;
        }
        out.insert(host.to_owned(), address(s));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn addresses_stay_in_range_and_are_distinct() {
        let hosts: Vec<String> = (0..2000).map(|i| format!("svc-{i}.example.com")).collect();
        let vips = allocate(hosts.iter().map(String::as_str));
        assert_eq!(vips.len(), 2000);
        let distinct: HashSet<_> = vips.values().collect();
        assert_eq!(distinct.len(), 2000);
        for ip in vips.values() {
            let [a, b, c, d] = ip.octets();
            assert_eq!((a, b), (240, 240));
            assert!((c, d) != (0, 0) && (c, d) != (255, 255), "{ip}");
        }
    }

    #[test]
    fn collisions_probe_deterministically() {
        // Find two hosts with the same preferred slot.
        let mut seen = BTreeMap::new();
        let (a, b) = (0..)
            .map(|i| format!("h{i}.example.com"))
            .find_map(|h| {
                let s = slot(&h);
                seen.insert(s, h.clone()).map(|prev| (prev, h))
            })
            .unwrap();
        let (first, second) = if a < b { (a, b) } else { (b, a) };
        let vips = allocate([second.as_str(), first.as_str()]);
        assert_eq!(vips[&first], address(slot(&first)));
        assert_eq!(vips[&second], address((slot(&first) + 1) % SLOTS));
        // The same input gives the same output.
        assert_eq!(vips, allocate([first.as_str(), second.as_str()]));
    }
}
