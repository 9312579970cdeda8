//! Consistent hashing for the balancer: a Maglev lookup table (Eisenbud et al., "Maglev: A Fast
//! and Reliable Software Network Load Balancer", NSDI 2016, §3.4), weighted as Envoy's
//! `MaglevTable` does.
//!
//! Why Maglev rather than a hash ring: lookup is one array read (O(1)) instead of a binary search
//! over `n × vnodes` points, and each endpoint owns a share of the table within a slot of its weight
//! (a ring needs hundreds of virtual nodes per endpoint for the same balance). The cost is
//! disruption: when an endpoint leaves, its slots are refilled and a small fraction of other slots
//! change owner too (the paper measures a few percent), where a ring moves only the leaver's keys.
//! An endpoint that is merely unavailable keeps its slots, and only its keys go elsewhere.
//!
//! Each endpoint has a permutation of the table derived from its key (not its index), so an
//! endpoint's preferences survive changes to the rest of the set; filling in key order makes the
//! table independent of the order endpoints are listed in.

use super::key::mix;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Table size for up to 6553 endpoints (≥ 10 slots each): prime, as the paper requires, and the
/// size Envoy uses by default.
const SMALL_TABLE: u64 = 65_537;
/// Slots per endpoint for larger sets.
const SLOTS_PER_ENDPOINT: u64 = 10;

pub(super) struct Maglev {
    /// Slot → endpoint index.
    table: Box<[u32]>,
}

fn is_prime(m: u64) -> bool {
    m >= 2
        && (2..)
            .take_while(|d| d * d <= m)
            .all(|d| !m.is_multiple_of(d))
}

/// One endpoint's walk along its permutation `pos, pos + skip, pos + 2·skip, … (mod M)`.
struct Turn {
    index: u32,
    key: u64,
    pos: u64,
    skip: u64,
    weight: u64,
    /// Envoy's turn threshold, raised by the largest weight at each turn.
    target: u64,
}

struct Fill {
    table: Vec<u32>,
    filled: usize,
}

impl Fill {
    fn done(&self) -> bool {
        self.filled == self.table.len()
    }

    /// Gives `t` the next free slot along its permutation.
    fn claim(&mut self, t: &mut Turn) {
        let m = self.table.len() as u64;
        loop {
            let c = t.pos as usize;
            // `skip < m`: one subtraction instead of a division per step.
            t.pos += t.skip;
            if t.pos >= m {
                t.pos -= m;
            }
            if self.table[c] == u32::MAX {
                self.table[c] = t.index;
                self.filled += 1;
                return;
            }
        }
    }
}

/// Envoy's weighted rule: in round r endpoint i takes a turn when r × weight ≥ its target, and each
/// turn raises the target by the largest weight, so the heaviest endpoint takes a turn every round
/// and one of a third of its weight every third round. The heap yields turns in (round, key order)
/// without visiting endpoints whose turn has not come; keys pack both in one `u128`.
fn weighted_turns(fill: &mut Fill, order: &mut [Turn], max_weight: u64) {
    let mut turns: BinaryHeap<Reverse<u128>> = (0..order.len())
        .map(|rank| Reverse((1u128 << 64) | rank as u128))
        .collect();
    while !fill.done() {
        let Reverse(next) = turns.pop().expect("every endpoint keeps a turn");
        let (round, rank) = ((next >> 64) as u64, next as u64 as usize);
        let t = &mut order[rank];
        fill.claim(t);
        t.target += max_weight;
        let again = t.target.div_ceil(t.weight).max(round + 1);
        turns.push(Reverse((u128::from(again) << 64) | rank as u128));
    }
}

fn table_size(n: usize) -> u64 {
    let want = n as u64 * SLOTS_PER_ENDPOINT;
    if want <= SMALL_TABLE {
        return SMALL_TABLE;
    }
    (want..).find(|&m| is_prime(m)).expect("a prime exists")
}

impl Maglev {
    /// The table for endpoints given as `(key, weight)`; weights at least 1. `O(M log n)`: a heap
    /// orders the turns, so a very uneven weight does not cost `M × n` as a round-by-round loop would.
    pub(super) fn new(endpoints: &[(u64, u64)]) -> Self {
        if endpoints.is_empty() {
            return Maglev {
                table: Box::new([]),
            };
        }
        let m = table_size(endpoints.len());
        let mut fill = Fill {
            table: vec![u32::MAX; m as usize],
            filled: 0,
        };
        // Key order, so the table does not depend on the order endpoints are listed in.
        let mut order: Vec<Turn> = endpoints
            .iter()
            .enumerate()
            .map(|(i, &(key, weight))| Turn {
                index: i as u32,
                key,
                pos: mix(key) % m,
                skip: mix(key ^ 0x9e37_79b9_7f4a_7c15) % (m - 1) + 1,
                weight: weight.max(1),
                target: 0,
            })
            .collect();
        order.sort_by_key(|t| (t.key, t.index));
        let max_weight = order.iter().map(|t| t.weight).max().unwrap_or(1);
        if order.iter().all(|t| t.weight == max_weight) {
            // Equal weights: every endpoint takes a turn every round, in key order (the paper's loop).
            'rounds: loop {
                for t in &mut order {
                    if fill.done() {
                        break 'rounds;
                    }
                    fill.claim(t);
                }
            }
        } else {
            weighted_turns(&mut fill, &mut order, max_weight);
        }
        Maglev {
            table: fill.table.into_boxed_slice(),
        }
    }

    /// Slots in the table.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// The endpoint at the `probe`-th slot after the key's own (probe 0).
    pub(super) fn at(&self, hash: u64, probe: usize) -> usize {
        let m = self.table.len();
        self.table[((hash % m as u64) as usize + probe) % m] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(m: &Maglev, keys: u64) -> Vec<usize> {
        (0..keys).map(|k| m.at(mix(k), 0)).collect()
    }

    #[test]
    fn slots_follow_weights() {
        let eps: Vec<(u64, u64)> = (0..4).map(|i| (mix(i + 100), i + 1)).collect();
        let m = Maglev::new(&eps);
        assert_eq!(m.len() as u64, SMALL_TABLE);
        for (i, &(_, w)) in eps.iter().enumerate() {
            let share =
                m.table.iter().filter(|&&e| e as usize == i).count() as f64 / m.len() as f64;
            let want = w as f64 / 10.0;
            assert!(
                (share - want).abs() < 0.01,
                "endpoint {i}: {share} vs {want}"
            );
        }
    }

    #[test]
    fn listing_order_does_not_change_the_table() {
        let eps: Vec<(u64, u64)> = (0..10).map(|i| (mix(i), 1)).collect();
        let mut reversed = eps.clone();
        reversed.reverse();
        let a = owners(&Maglev::new(&eps), 1000);
        let b = owners(&Maglev::new(&reversed), 1000);
        assert!(a.iter().zip(&b).all(|(&x, &y)| x == 9 - y));
    }

    #[test]
    fn large_sets_get_a_larger_prime_table() {
        assert_eq!(table_size(100), SMALL_TABLE);
        let m = table_size(10_000);
        assert!(m >= 100_000 && is_prime(m));
    }
}
