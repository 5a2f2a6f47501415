//! Rendezvous (highest-random-weight) hashing: which of several places a key belongs to, such
//! that taking a place away moves only the keys that were on it.
//!
//! Every (key, place) pair gets a pseudo-random score; a key goes to the live place with the
//! highest score for it (Thaler and Ravishankar, 1996). A place that goes away loses exactly
//! the keys it had won, and each of them goes to its own second-best place, spread over the
//! rest; every other key keeps its place, because its best score did not change. A place
//! that comes back wins back exactly those keys. A modulo over the live places (`hash % n`)
//! would move almost every key whenever `n` changes.
//!
//! Used twice, with one implementation: the master's `--policy ip-hash` (key: the client's IP
//! address; places: worker *slots*, so a respawned or reloaded worker takes over its
//! predecessor's clients) and `herd proxy --balance ip-hash | header:NAME | cookie:NAME`
//! (places: targets, so a target marked down moves only its own clients).
//!
//! The scores need to be well spread, not secret: an attacker who picks keys can pile them
//! onto one place, as with any hash-based affinity (it is a stickiness rule, not a defence).

use std::net::IpAddr;

/// The key of a byte string (a header or cookie value): 64-bit FNV-1a, finished with a
/// strong mix so that keys that differ in one byte score unrelated.
pub fn key_of(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// The key of a client address. An IPv4 client reached over an IPv6 socket
/// (`::ffff:a.b.c.d`) has the key of `a.b.c.d`, so one client has one key whatever the
/// listener's family.
pub fn ip_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => key_of(&v4.octets()),
        IpAddr::V6(v6) => key_of(&v6.octets()),
    }
}

/// The score of `key` at `place`.
pub fn score(key: u64, place: u64) -> u64 {
    mix(key ^ mix(place.wrapping_add(0x9E37_79B9_7F4A_7C15)))
}

/// Of the candidates `0..len` that are `eligible`, the one whose place (`place(i)`) scores
/// highest for `key`; `None` if none is eligible. Two candidates at one place (an old
/// worker and its replacement, for a moment, in one slot) tie: the later one wins.
pub fn pick(
    key: u64,
    len: usize,
    eligible: impl Fn(usize) -> bool,
    place: impl Fn(usize) -> u64,
) -> Option<usize> {
    (0..len)
        .filter(|&i| eligible(i))
        .map(|i| (score(key, place(i)), i))
        .max()
        .map(|(_, i)| i)
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(key: u64, places: &[u64]) -> u64 {
        places[pick(key, places.len(), |_| true, |i| places[i]).unwrap()]
    }

    #[test]
    fn keys_spread_over_places() {
        let places = [0, 1, 2, 3];
        let mut count = [0u32; 4];
        for k in 0..4000u32 {
            count[owner(key_of(&k.to_le_bytes()), &places) as usize] += 1;
        }
        assert!(count.iter().all(|&c| c > 800), "{count:?}");
    }

    #[test]
    fn removing_a_place_moves_only_its_keys_and_restoring_it_brings_them_back() {
        let all = [0u64, 1, 2, 3, 4];
        let without_2 = [0u64, 1, 3, 4];
        let mut moved = 0;
        for k in 0..2000u32 {
            let key = key_of(&k.to_le_bytes());
            let before = owner(key, &all);
            let after = owner(key, &without_2);
            if before == 2 {
                moved += 1;
                assert_ne!(after, 2);
            } else {
                assert_eq!(before, after, "key {k} moved though its place stayed");
            }
        }
        assert!(moved > 200, "{moved} keys were on place 2");
    }

    #[test]
    fn ties_go_to_the_later_candidate_and_ineligible_ones_are_skipped() {
        let key = ip_key("10.0.0.1".parse().unwrap());
        let places = [7u64, 7];
        assert_eq!(pick(key, 2, |_| true, |i| places[i]), Some(1));
        assert_eq!(pick(key, 2, |i| i == 0, |i| places[i]), Some(0));
        assert_eq!(pick(key, 2, |_| false, |i| places[i]), None);
    }

    #[test]
    fn an_ipv4_client_has_one_key_over_either_family() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ip_key(v4), ip_key(mapped));
        assert_ne!(ip_key(v4), ip_key("192.0.2.8".parse().unwrap()));
    }
}
