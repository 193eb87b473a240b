//! The smooth piece a piecewise smooth loss's input lies on, as the statistic
//! [`PIECE_STAT`](dmlbench_abi::PIECE_STAT).
//!
//! A loss built from hinges or bins is smooth except where an inner quantity crosses a
//! threshold: a distance crossing a bin edge of FastAP's histogram. Finite differences that
//! straddle such a kink measure neither side's slope, and a kink can lie closer to a random
//! input than any step a gradient check can afford. A loss that sets
//! [`Loss::PIECEWISE_SMOOTH`](crate::Loss::PIECEWISE_SMOOTH) names its piece instead: it feeds
//! the discrete choice behind every kink (which bin each distance falls in) to a [`Piece`],
//! and the gradient check compares only differences whose steps stay on the piece. Inputs on
//! one piece give equal values; two pieces collide with probability 2⁻⁵², which at worst lets
//! one coordinate be differenced across a kink, as without a piece.
//!
//! ```
//! use dmlbench_sdk::piece::Piece;
//! let bins = |d: &[f64]| {
//!     let mut piece = Piece::default();
//!     for &v in d {
//!         piece.add((v / 0.4).floor() as u64);
//!     }
//!     piece.value()
//! };
//! assert_eq!(bins(&[0.1, 1.9]), bins(&[0.3, 1.7]));
//! assert_ne!(bins(&[0.1, 1.9]), bins(&[0.1, 2.1]));
//! ```

use crate::plugin::Stats;

/// A running hash (64-bit FNV-1a) of the choices that fix a smooth piece, in a fixed order.
#[derive(Clone, Copy, Debug)]
pub struct Piece(u64);

impl Default for Piece {
    fn default() -> Self {
        Piece(0xcbf2_9ce4_8422_2325)
    }
}

impl Piece {
    /// Adds one choice (a bin index, a side of a hinge).
    pub fn add(&mut self, choice: u64) {
        for byte in choice.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The piece as a statistic: an integer below 2⁵², exact in `f64`.
    pub fn value(&self) -> f64 {
        (self.0 >> 12) as f64
    }

    /// Records the piece in `stats` under [`PIECE_STAT`](dmlbench_abi::PIECE_STAT).
    pub fn record(&self, stats: &mut Stats) {
        stats.record(dmlbench_abi::PIECE_STAT, self.value());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{GradCheck, check_loss_gradient, context};
    use crate::{Batch, Context, Instance, Loss, Plugin, Result};

    /// Σ [z − k]₊ with k = 1e-5, each side of k a piece; it names them unless told to be
    /// silent.
    struct Hinges {
        record: bool,
    }

    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct Silent(bool);

    impl Plugin for Hinges {
        type Config = Silent;
        const ID: &'static str = "hinges";
        const NAME: &'static str = "Hinges";
        const VERSION: &'static str = "0.1.0";
        const SUMMARY: &'static str = "a test loss";
        fn new(silent: Silent, _: &Context) -> Result<Self> {
            Ok(Hinges { record: !silent.0 })
        }
    }

    impl Loss for Hinges {
        const PIECEWISE_SMOOTH: bool = true;
        fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
            let k = 1e-5;
            let mut piece = Piece::default();
            let mut value = 0.0;
            for (g, &z) in grad.iter_mut().zip(batch.embeddings.data) {
                let above = f64::from(z) > k;
                piece.add(u64::from(above));
                value += (f64::from(z) - k).max(0.0);
                *g = if above { 1.0 } else { 0.0 };
            }
            if self.record {
                piece.record(stats);
            }
            Ok(value)
        }
    }

    #[test]
    fn the_check_differences_on_the_piece_and_a_loss_that_names_none_is_refused() {
        // Every coordinate 0 lies 1e-5 below its hinge: each forward step crosses it.
        let z = [0.0f32; 4];
        let mut loss = Instance::<Hinges>::new(Silent(false), context(2, 0)).unwrap();
        let report = check_loss_gradient(&mut loss, &z, &[0, 1], None, &GradCheck::default()).unwrap();
        assert_eq!((report.checked, report.kinks), (4, 0));
        let mut silent = Instance::<Hinges>::new(Silent(true), context(2, 0)).unwrap();
        let error = silent.forward_backward(&z, &[0, 1], None).unwrap_err();
        assert!(error.message().contains("recorded no 'piece' statistic"), "{}", error.message());
    }
}
