//! The distance a loss or miner compares embeddings with, as a configurable part.
//!
//! As in pytorch-metric-learning, where distances are objects with defaults that any loss
//! accepts, a plugin puts a [`DistanceConfig`] in its own configuration and gets Euclidean
//! distance on L2-normalised embeddings (PML's `LpDistance()` default) unless the user picks
//! another [`Measure`]. [`BatchDistances`] holds the n×n matrix and backpropagates through the
//! measure and the normalisation.
//!
//! ```
//! use dmlbench_sdk::distance::DistanceConfig;
//! use dmlbench_sdk::matrix::MatRef;
//! let z = MatRef::new(2, 2, &[2.0, 0.0, 0.0, 5.0]);
//! let d = DistanceConfig::default().compute(z);
//! assert!((d.values().get(0, 1) - 2f32.sqrt()).abs() < 1e-6); // unit vectors at 90°
//! ```

use serde::{Deserialize, Serialize};

use crate::matrix::{MatRef, Matrix};
use crate::normalize::{Normalized, l2_normalize, l2_normalize_backward};
use crate::pairwise::{Measure, Pairwise, pairwise, pairwise_self};
use crate::plugin::Batch;

/// Which measure, and whether embeddings are L2-normalised first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistanceConfig {
    /// The measure (`euclidean`, `squared_euclidean`, `cosine` or `dot`).
    pub measure: Measure,
    /// Normalise embeddings to unit length before measuring.
    pub normalize_embeddings: bool,
}

impl Default for DistanceConfig {
    fn default() -> Self {
        DistanceConfig { measure: Measure::Euclidean, normalize_embeddings: true }
    }
}

impl DistanceConfig {
    /// Cosine similarity (on normalised embeddings), the similarity most losses use.
    pub fn cosine() -> Self {
        DistanceConfig { measure: Measure::Cosine, normalize_embeddings: true }
    }

    /// True when larger values mean closer (cosine, dot).
    pub fn is_similarity(&self) -> bool {
        self.measure.is_similarity()
    }

    /// The n×m matrix between the rows of `z` and those of `other` (proxies, class
    /// centres), both normalised when the configuration says so.
    pub fn between(&self, z: MatRef<'_>, other: MatRef<'_>) -> CrossDistances {
        let normalized = self.normalize_embeddings.then(|| (l2_normalize(z), l2_normalize(other)));
        let (x, y) = normalized.as_ref().map_or((z, other), |(nz, no)| (nz.unit.view(), no.unit.view()));
        CrossDistances { pairwise: pairwise(self.measure, x, y), normalized }
    }

    /// The n×m matrix a loss compares a batch with: its rows against the references when it
    /// has some, else against themselves (n×n).
    pub fn for_batch(&self, batch: &Batch<'_>) -> AnchorDistances {
        match &batch.references {
            None => AnchorDistances::Batch(self.compute(batch.embeddings)),
            Some(r) => AnchorDistances::References(self.between(batch.embeddings, r.embeddings)),
        }
    }

    /// The n×n matrix of the rows of `z`.
    pub fn compute(&self, z: MatRef<'_>) -> BatchDistances {
        let normalized = self.normalize_embeddings.then(|| l2_normalize(z));
        let measured = normalized.as_ref().map_or(z, |nz| nz.unit.view());
        let pairwise = pairwise_self(self.measure, measured);
        BatchDistances { normalized, pairwise }
    }
}

/// An n×m distance or similarity matrix between embeddings and another set of rows (see
/// [`DistanceConfig::between`]), ready for its backward pass.
#[derive(Clone, Debug)]
pub struct CrossDistances {
    normalized: Option<(Normalized, Normalized)>,
    pairwise: Pairwise,
}

impl CrossDistances {
    /// The n×m values.
    pub fn values(&self) -> &Matrix {
        &self.pairwise.values
    }

    /// (dL/dZ, dL/dOther) from dL/dvalues (n×m), for the inputs the matrix was computed from.
    pub fn backward(&self, z: MatRef<'_>, other: MatRef<'_>, grad: MatRef<'_>) -> (Matrix, Matrix) {
        match &self.normalized {
            Some((nz, no)) => {
                let (du, dq) = self.pairwise.backward(nz.unit.view(), no.unit.view(), grad);
                (l2_normalize_backward(nz, du.view()), l2_normalize_backward(no, dq.view()))
            }
            None => self.pairwise.backward(z, other, grad),
        }
    }

    /// dL/dZ alone, `other` being constant.
    pub fn backward_anchors(&self, z: MatRef<'_>, other: MatRef<'_>, grad: MatRef<'_>) -> Matrix {
        match &self.normalized {
            Some((nz, no)) => {
                let du = self.pairwise.backward_x(nz.unit.view(), no.unit.view(), grad);
                l2_normalize_backward(nz, du.view())
            }
            None => self.pairwise.backward_x(z, other, grad),
        }
    }
}

/// The matrix between a batch's rows and its references, or itself (see
/// [`DistanceConfig::for_batch`]); its backward pass gives the batch's gradient only.
#[derive(Clone, Debug)]
pub enum AnchorDistances {
    /// The batch against itself.
    Batch(BatchDistances),
    /// The batch against constant references.
    References(CrossDistances),
}

impl AnchorDistances {
    /// The n×m values.
    pub fn values(&self) -> &Matrix {
        match self {
            AnchorDistances::Batch(d) => d.values(),
            AnchorDistances::References(d) => d.values(),
        }
    }

    /// dL/dZ of the batch from dL/dvalues (n×m); references are constants.
    pub fn backward(&self, batch: &Batch<'_>, grad: MatRef<'_>) -> Matrix {
        match self {
            AnchorDistances::Batch(d) => d.backward(batch.embeddings, grad),
            AnchorDistances::References(d) => d.backward_anchors(batch.embeddings, batch.reference_embeddings(), grad),
        }
    }
}

/// An n×n distance or similarity matrix of one batch, ready for its backward pass.
#[derive(Clone, Debug)]
pub struct BatchDistances {
    normalized: Option<Normalized>,
    pairwise: Pairwise,
}

impl BatchDistances {
    /// The n×n values.
    pub fn values(&self) -> &Matrix {
        &self.pairwise.values
    }

    /// dL/dZ from dL/dvalues (n×n), for the same `z` that produced them.
    pub fn backward(&self, z: MatRef<'_>, grad: MatRef<'_>) -> Matrix {
        match &self.normalized {
            Some(nz) => {
                let du = self.pairwise.backward_self(nz.unit.view(), grad);
                l2_normalize_backward(nz, du.view())
            }
            None => self.pairwise.backward_self(z, grad),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{GradCheck, check_gradient, random_embeddings};

    #[test]
    fn backward_through_normalisation_matches_finite_differences() {
        let (n, d) = (5, 3);
        let z = random_embeddings(21, n, d);
        let g = random_embeddings(22, n, n);
        for normalize_embeddings in [true, false] {
            for measure in [Measure::Euclidean, Measure::Cosine, Measure::SquaredEuclidean, Measure::Dot] {
                let config = DistanceConfig { measure, normalize_embeddings };
                let dist = config.compute(MatRef::new(n, d, &z));
                let dz = dist.backward(MatRef::new(n, d, &z), MatRef::new(n, n, &g));
                let f = |x: &[f32]| {
                    let v = config.compute(MatRef::new(n, d, x));
                    Ok(v.values().data.iter().zip(&g).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum())
                };
                check_gradient(f, &z, &dz.data, &GradCheck::default()).unwrap_or_else(|e| panic!("{config:?}: {e}"));
            }
        }
    }

    #[test]
    fn anchor_gradient_against_constant_references_matches_finite_differences() {
        let (n, m, d) = (4, 6, 3);
        let z = random_embeddings(31, n, d);
        let refs = random_embeddings(32, m, d);
        let g = random_embeddings(33, n, m);
        for normalize_embeddings in [true, false] {
            for measure in [Measure::Euclidean, Measure::Cosine, Measure::SquaredEuclidean, Measure::Dot] {
                let config = DistanceConfig { measure, normalize_embeddings };
                let cross = config.between(MatRef::new(n, d, &z), MatRef::new(m, d, &refs));
                let dz = cross.backward_anchors(MatRef::new(n, d, &z), MatRef::new(m, d, &refs), MatRef::new(n, m, &g));
                let (full, _) = cross.backward(MatRef::new(n, d, &z), MatRef::new(m, d, &refs), MatRef::new(n, m, &g));
                assert_eq!(dz, full, "{config:?}: the anchor half differs from the full backward");
                let f = |x: &[f32]| {
                    let v = config.between(MatRef::new(n, d, x), MatRef::new(m, d, &refs));
                    Ok(v.values().data.iter().zip(&g).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum())
                };
                check_gradient(f, &z, &dz.data, &GradCheck::default()).unwrap_or_else(|e| panic!("{config:?}: {e}"));
            }
        }
    }
}
