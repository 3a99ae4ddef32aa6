//! Epoch plans: which samples each rank reads, in which order, batch by batch.
//!
//! The plan is a pure function of (seed, epoch, group sizes, shuffle, block size, rank,
//! world_size, batch_size, drop_last):
//! 1. a seeded permutation of the groups (shards, or videos as groups of one);
//! 2. consecutive groups are cut into blocks of `block_groups`; within a block all samples are
//!    shuffled (locality: a block's files are read together);
//! 3. the global order is dealt out batch by batch, round-robin over ranks, so every rank gets
//!    the same number of batches. `drop_last`: the tail that does not fill a batch on every rank
//!    is dropped (each sample at most once). Otherwise the order is padded by wrap-around to
//!    `ceil(N / W) * W` samples (each sample at least once, a few twice) and every rank's last
//!    batch has the same, possibly smaller, size.
// Shard sizes come from files: arithmetic on them is checked or saturating (saturation is
// unreachable below the bounds ShardSet::open enforces; it never wraps).
#![deny(clippy::arithmetic_side_effects)]

/// SplitMix64 finaliser: a good 64-bit mixer.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed for a purpose (`stream`) from the user seed and the epoch.
pub fn mix(seed: u64, epoch: u64, stream: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(seed) ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407)) ^ stream)
}

/// Small portable PRNG (SplitMix64 stream); the same numbers on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n) (n > 0), unbiased (Lemire's method with rejection).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        let threshold = n.wrapping_neg().checked_rem(n).unwrap_or(0);
        loop {
            let m = u128::from(self.next_u64()).saturating_mul(u128::from(n)); // < 2^128: exact
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below((i as u64).saturating_add(1)) as usize;
            v.swap(i, j);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    pub rank: usize,
    pub world_size: usize,
    pub drop_last: bool,
    /// Groups (shards) shuffled together; 0 = all groups in one block (a full shuffle).
    pub block_groups: usize,
}

impl PlanConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 {
            return Err("batch_size must be >= 1".into());
        }
        if self.world_size == 0 {
            return Err("world_size must be >= 1".into());
        }
        if self.rank >= self.world_size {
            return Err(format!("rank {} must be in [0, world_size={})", self.rank, self.world_size));
        }
        Ok(())
    }
}

/// The global sample order of one epoch (ids are `offset of group + index in group`, groups in
/// the caller's order).
pub fn epoch_order(sizes: &[u64], cfg: &PlanConfig, epoch: u64) -> Vec<u64> {
    let total: u64 = sizes.iter().sum();
    let mut offsets = Vec::with_capacity(sizes.len());
    let mut acc = 0u64;
    for s in sizes {
        offsets.push(acc);
        acc = acc.saturating_add(*s);
    }
    if !cfg.shuffle {
        return (0..total).collect();
    }
    let mut rng = Rng::new(mix(cfg.seed, epoch, 0x5EED_0001));
    let mut groups: Vec<usize> = (0..sizes.len()).collect();
    rng.shuffle(&mut groups);
    let block = if cfg.block_groups == 0 { groups.len().max(1) } else { cfg.block_groups };
    let mut order = Vec::with_capacity(total as usize);
    for chunk in groups.chunks(block) {
        let start = order.len();
        for &g in chunk {
            order.extend(offsets[g]..offsets[g].saturating_add(sizes[g]));
        }
        rng.shuffle(&mut order[start..]);
    }
    order
}

/// One rank's share of an epoch: `samples` batch after batch, `batch_starts[k]..batch_starts[k+1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RankPlan {
    pub samples: Vec<u64>,
    pub batch_starts: Vec<usize>,
}

impl RankPlan {
    pub fn num_batches(&self) -> usize {
        self.batch_starts.len().saturating_sub(1)
    }
    pub fn batch(&self, k: usize) -> &[u64] {
        &self.samples[self.batch_starts[k]..self.batch_starts[k.saturating_add(1)]]
    }
}

/// Batches per rank for `n` samples.
pub fn num_batches(n: u64, cfg: &PlanConfig) -> usize {
    let (w, b) = (cfg.world_size as u64, cfg.batch_size as u64);
    if n == 0 {
        return 0;
    }
    if cfg.drop_last {
        n.checked_div(w.saturating_mul(b)).unwrap_or(0) as usize
    } else {
        let per_rank = n.div_ceil(w);
        per_rank.div_ceil(b) as usize
    }
}

pub fn rank_plan(order: &[u64], cfg: &PlanConfig) -> RankPlan {
    let n = order.len() as u64;
    let (w, b, r) = (cfg.world_size as u64, cfg.batch_size as u64, cfg.rank as u64);
    let nb = num_batches(n, cfg) as u64;
    let mut samples = Vec::new();
    let mut batch_starts = vec![0usize];
    if nb == 0 {
        return RankPlan { samples, batch_starts };
    }
    let at = |i: u64| order[i.checked_rem(n).unwrap_or(0) as usize];
    if cfg.drop_last {
        for k in 0..nb {
            let s = k.saturating_mul(w).saturating_add(r).saturating_mul(b);
            samples.extend((s..s.saturating_add(b)).map(at));
            batch_starts.push(samples.len());
        }
    } else {
        let per_rank = n.div_ceil(w);
        let full = nb.saturating_sub(1); // nb >= 1 here
        let last = per_rank.saturating_sub(full.saturating_mul(b));
        for k in 0..full {
            let s = k.saturating_mul(w).saturating_add(r).saturating_mul(b);
            samples.extend((s..s.saturating_add(b)).map(at));
            batch_starts.push(samples.len());
        }
        let s = full.saturating_mul(w).saturating_mul(b).saturating_add(r.saturating_mul(last));
        samples.extend((s..s.saturating_add(last)).map(at));
        batch_starts.push(samples.len());
    }
    RankPlan { samples, batch_starts }
}

/// A fingerprint of everything the plan depends on except epoch and rank (for resume checks).
pub fn fingerprint(sizes: &[u64], cfg: &PlanConfig) -> u64 {
    let mut h = splitmix64(cfg.seed ^ 0xF1A6);
    for &s in sizes {
        h = splitmix64(h ^ s);
    }
    for v in [cfg.batch_size as u64, cfg.world_size as u64, cfg.shuffle as u64, cfg.drop_last as u64, cfg.block_groups as u64] {
        h = splitmix64(h ^ v);
    }
    h
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(b: usize, rank: usize, w: usize, drop_last: bool) -> PlanConfig {
        PlanConfig { batch_size: b, shuffle: true, seed: 7, rank, world_size: w, drop_last, block_groups: 2 }
    }

    #[test]
    fn deterministic_and_reshuffled() {
        let sizes = [10, 7, 13, 1];
        let c = cfg(4, 0, 1, true);
        assert_eq!(epoch_order(&sizes, &c, 0), epoch_order(&sizes, &c, 0));
        assert_ne!(epoch_order(&sizes, &c, 0), epoch_order(&sizes, &c, 1));
        let mut o = epoch_order(&sizes, &c, 3);
        o.sort();
        assert_eq!(o, (0..31).collect::<Vec<_>>());
        let c2 = PlanConfig { shuffle: false, ..c };
        assert_eq!(epoch_order(&sizes, &c2, 5), (0..31).collect::<Vec<_>>());
    }

    #[test]
    fn ranks_cover_each_sample_once_with_equal_batches() {
        for n in [0u64, 1, 5, 31, 64, 100] {
            for w in 1..5 {
                for b in 1..6 {
                    for drop_last in [true, false] {
                        let sizes = [n / 2, n - n / 2];
                        let plans: Vec<RankPlan> = (0..w)
                            .map(|r| {
                                let c = cfg(b, r, w, drop_last);
                                rank_plan(&epoch_order(&sizes, &c, 1), &c)
                            })
                            .collect();
                        let nb = plans[0].num_batches();
                        let mut seen: HashMap<u64, usize> = HashMap::new();
                        for p in &plans {
                            assert_eq!(p.num_batches(), nb);
                            assert_eq!(p.num_batches(), num_batches(n, &cfg(b, 0, w, drop_last)));
                            for k in 0..nb {
                                assert_eq!(p.batch(k).len(), plans[0].batch(k).len());
                                if k + 1 < nb {
                                    assert_eq!(p.batch(k).len(), b);
                                }
                            }
                            for &s in &p.samples {
                                *seen.entry(s).or_default() += 1;
                            }
                        }
                        if drop_last {
                            assert!(seen.values().all(|&c| c == 1));
                            let used = (n / (w as u64 * b as u64)) * w as u64 * b as u64;
                            assert_eq!(seen.len() as u64, used);
                        } else {
                            assert_eq!(seen.len() as u64, n, "n={n} w={w} b={b}");
                            let total: usize = seen.values().sum();
                            assert_eq!(total as u64, if n == 0 { 0 } else { n.div_ceil(w as u64) * w as u64 });
                            if n == 0 {
                                continue;
                            }
                            let (lo, hi) = (total / n as usize, (total as u64).div_ceil(n) as usize);
                            assert!(seen.values().all(|&c| c == lo || c == hi));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn block_shuffle_keeps_locality() {
        let sizes = [100u64; 8];
        let c = PlanConfig { block_groups: 2, ..cfg(10, 0, 1, true) };
        let o = epoch_order(&sizes, &c, 0);
        // each run of 200 samples comes from exactly 2 shards
        for chunk in o.chunks(200) {
            let mut shards: Vec<u64> = chunk.iter().map(|s| s / 100).collect();
            shards.sort();
            shards.dedup();
            assert_eq!(shards.len(), 2);
        }
    }

    #[test]
    fn rng_below_is_in_range_and_spread() {
        let mut r = Rng::new(1);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[r.below(7) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)));
    }
}
