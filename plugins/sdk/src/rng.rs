//! Seeded random draws for plugins that sample (dropout masks, distance-weighted negatives,
//! random initialisation), reproducible from the run's seed.
//!
//! A plugin must give the same results for the same seed, and fresh draws on every call.
//! [`CallRng`] opens one ChaCha8 stream per (seed, purpose, call): the seed comes from
//! [`Context::seed`](crate::Context::seed), the purpose is a fixed string naming what the
//! draws are for (so two uses in one plugin never share numbers), and the call is the
//! plugin's own counter. ChaCha streams with different keys or stream numbers are
//! independent, so no call depends on how many numbers an earlier call consumed, and a run
//! resumed from a checkpoint that saved the counter (see [`encode_counter`]) draws exactly
//! what the uninterrupted run would have drawn.
//!
//! ```
//! use dmlbench_sdk::rng::CallRng;
//! let mut a = CallRng::new(7, "dropout", 3);
//! let mut b = CallRng::new(7, "dropout", 3);
//! assert_eq!(a.uniform(), b.uniform());
//! let mut other_call = CallRng::new(7, "dropout", 4);
//! assert_ne!(CallRng::new(7, "dropout", 3).uniform(), other_call.uniform());
//! // Index 1 carries all the weight.
//! assert_eq!(a.categorical(&[0.0, 2.0, 0.0]), Some(1));
//! assert_eq!(a.categorical(&[0.0, 0.0]), None);
//! ```

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// The random stream of one call of one plugin.
#[derive(Clone, Debug)]
pub struct CallRng {
    rng: ChaCha8Rng,
}

/// FNV-1a, to turn a purpose string into key material without a hashing dependency.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl CallRng {
    /// The stream for draw number `call` of `purpose`, under `seed`.
    pub fn new(seed: u64, purpose: &str, call: u64) -> Self {
        // The key holds the seed and the purpose verbatim, so distinct (seed, purpose) pairs
        // get distinct keys; the call number selects the ChaCha stream within the key.
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&fnv1a(purpose).to_le_bytes());
        key[16..24].copy_from_slice(&(purpose.len() as u64).to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(call);
        CallRng { rng }
    }

    /// A uniform draw in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// A uniform index in `0..n`. Panics if `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "CallRng::below: empty range");
        self.rng.random_range(0..n)
    }

    /// A standard normal draw (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        // 1 − u lies in (0, 1], so the logarithm is finite.
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// An index drawn with probability proportional to `weights` (non-negative, finite), or
    /// `None` when they sum to zero.
    pub fn categorical(&mut self, weights: &[f64]) -> Option<usize> {
        let total: f64 = weights.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return None;
        }
        let target = self.uniform() * total;
        let mut cumulative = 0.0;
        let mut last_positive = None;
        for (i, &w) in weights.iter().enumerate() {
            if w <= 0.0 {
                continue;
            }
            cumulative += w;
            last_positive = Some(i);
            if target < cumulative {
                return Some(i);
            }
        }
        // Rounding can leave `target` a hair above the running sum: the last index with
        // weight takes that sliver, never an index with zero weight.
        last_positive
    }
}

/// A call counter as four `f32` values holding 16 bits each, exactly, so that it can be
/// saved with [`crate::state::save_tensors`] (which stores `f32` tensors only).
///
/// ```
/// use dmlbench_sdk::rng::{decode_counter, encode_counter};
/// let saved = encode_counter(123_456_789_012);
/// assert_eq!(decode_counter(&saved, "calls").unwrap(), 123_456_789_012);
/// ```
pub fn encode_counter(counter: u64) -> [f32; 4] {
    std::array::from_fn(|i| ((counter >> (16 * i)) & 0xffff) as f32)
}

/// The counter written by [`encode_counter`]; `name` names the state tensor in errors.
pub fn decode_counter(values: &[f32], name: &str) -> Result<u64> {
    if values.len() != 4 {
        return Err(Error::bad_input(format!("state tensor '{name}' has {} values, expected 4", values.len())));
    }
    let mut counter = 0u64;
    for (i, &v) in values.iter().enumerate() {
        if !(0.0..=65535.0).contains(&v) || v.fract() != 0.0 {
            return Err(Error::bad_input(format!("state tensor '{name}' holds {v}, not a 16-bit chunk of a counter")));
        }
        counter |= (v as u64) << (16 * i);
    }
    Ok(counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_seed_purpose_and_call() {
        let first = |seed, purpose, call| CallRng::new(seed, purpose, call).uniform();
        let base = first(1, "a", 0);
        assert_eq!(base, first(1, "a", 0));
        assert_ne!(base, first(2, "a", 0));
        assert_ne!(base, first(1, "b", 0));
        assert_ne!(base, first(1, "a", 1));
    }

    #[test]
    fn categorical_frequencies_match_the_weights() {
        // 40,000 draws from (1, 0, 3, 6)/10: each frequency within 4 standard errors.
        let weights = [1.0, 0.0, 3.0, 6.0];
        let draws = 40_000;
        let mut counts = [0usize; 4];
        let mut rng = CallRng::new(5, "test", 0);
        for _ in 0..draws {
            counts[rng.categorical(&weights).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0, "a zero weight was drawn");
        for (i, &w) in weights.iter().enumerate() {
            let p = w / 10.0;
            let freq = counts[i] as f64 / draws as f64;
            let se = (p * (1.0 - p) / draws as f64).sqrt();
            assert!((freq - p).abs() <= 4.0 * se + 1e-12, "index {i}: frequency {freq}, probability {p}");
        }
    }

    #[test]
    fn normal_draws_have_unit_variance() {
        let mut rng = CallRng::new(9, "normal", 0);
        let xs: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        // Standard errors: 0.007 for the mean, 0.01 for the variance.
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, variance {var}");
    }

    #[test]
    fn counters_round_trip_and_bad_chunks_are_rejected() {
        for c in [0, 1, 65_535, 65_536, u64::MAX] {
            assert_eq!(decode_counter(&encode_counter(c), "c").unwrap(), c);
        }
        assert!(decode_counter(&[0.5, 0.0, 0.0, 0.0], "c").is_err());
        assert!(decode_counter(&[70_000.0, 0.0, 0.0, 0.0], "c").is_err());
        assert!(decode_counter(&[0.0; 3], "c").is_err());
    }
}
