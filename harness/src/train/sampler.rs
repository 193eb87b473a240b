//! Which training images go into which batch, for one epoch.
//!
//! Both samplers make one epoch one pass over the training images, so epochs mean the same
//! amount of data whatever the loss:
//! - [`SamplerSpec::Random`]: a shuffle of all images cut into batches (the last one
//!   smaller), the paper's cross-entropy recipe;
//! - [`SamplerSpec::MPerClass`]: batches of `batch_size / m` classes with `m` images each
//!   (the pairwise recipes), `ceil(n / batch_size)` batches per epoch. Classes are visited in
//!   a shuffled cycle so all appear equally often; a class with fewer than `m` images
//!   repeats some of them within a batch.
//!
//! The order depends only on (seed, epoch), so a resumed run sees the same batches.

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::experiment::spec::SamplerSpec;

fn rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    // Distinct streams per (seed, epoch); the constant keeps them apart from other uses of
    // the same seed.
    ChaCha8Rng::seed_from_u64(seed ^ 0x5a4d_504c_4552_0000 ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The batches (lists of training-image indices) of `epoch` (0-based).
pub fn epoch_batches(spec: SamplerSpec, labels: &[i64], batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let n = labels.len();
    let mut rng = rng(seed, epoch);
    match spec {
        SamplerSpec::Random => {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            order.chunks(batch_size).map(<[usize]>::to_vec).collect()
        }
        SamplerSpec::MPerClass { m } => {
            let classes_per_batch = (batch_size / m).max(1);
            let mut by_class: Vec<(i64, Vec<usize>)> = Vec::new();
            let mut sorted: Vec<(i64, usize)> = labels.iter().copied().zip(0..n).collect();
            sorted.sort_unstable();
            for (label, i) in sorted {
                match by_class.last_mut() {
                    Some((l, members)) if *l == label => members.push(i),
                    _ => by_class.push((label, vec![i])),
                }
            }
            let batches = n.div_ceil(batch_size);
            let mut cycle: Vec<usize> = Vec::new();
            let mut out = Vec::with_capacity(batches);
            for _ in 0..batches {
                let mut batch = Vec::with_capacity(classes_per_batch * m);
                let mut chosen = Vec::with_capacity(classes_per_batch);
                while chosen.len() < classes_per_batch.min(by_class.len()) {
                    if cycle.is_empty() {
                        cycle = (0..by_class.len()).collect();
                        cycle.shuffle(&mut rng);
                    }
                    let c = cycle.pop().expect("refilled above");
                    if !chosen.contains(&c) {
                        chosen.push(c);
                    }
                }
                for &c in &chosen {
                    let members = &mut by_class[c].1;
                    if members.len() >= m {
                        members.shuffle(&mut rng);
                        batch.extend_from_slice(&members[..m]);
                    } else {
                        batch.extend((0..m).map(|_| members[rng.random_range(0..members.len())]));
                    }
                }
                out.push(batch);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_batches_are_a_permutation_and_reproducible() {
        let labels: Vec<i64> = (0..103).map(|i| i % 7).collect();
        let b = epoch_batches(SamplerSpec::Random, &labels, 32, 5, 0);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![32, 32, 32, 7]);
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        assert_eq!(b, epoch_batches(SamplerSpec::Random, &labels, 32, 5, 0));
        assert_ne!(b, epoch_batches(SamplerSpec::Random, &labels, 32, 5, 1));
    }

    #[test]
    fn m_per_class_batches_have_m_of_each_class() {
        // 10 classes of 9 images, one class of 2 (fewer than m).
        let mut labels: Vec<i64> = (0..90).map(|i| i / 9).collect();
        labels.extend([10, 10]);
        let spec = SamplerSpec::MPerClass { m: 4 };
        let batches = epoch_batches(spec, &labels, 16, 1, 3);
        assert_eq!(batches.len(), 92usize.div_ceil(16));
        let mut class_uses = vec![0usize; 11];
        for batch in &batches {
            assert_eq!(batch.len(), 16);
            let mut classes: Vec<i64> = batch.iter().map(|&i| labels[i]).collect();
            classes.sort_unstable();
            for chunk in classes.chunks(4) {
                assert!(chunk.iter().all(|&c| c == chunk[0]), "{classes:?}");
                class_uses[chunk[0] as usize] += 1;
            }
            classes.dedup();
            assert_eq!(classes.len(), 4, "4 distinct classes per batch");
        }
        // 6 batches × 4 classes = 24 visits over 11 classes in shuffled cycles: each class
        // 2 or 3 times.
        assert!(class_uses.iter().all(|&u| (2..=3).contains(&u)), "{class_uses:?}");
        assert_eq!(batches, epoch_batches(spec, &labels, 16, 1, 3));
    }
}
