//! The fixed batches of the PML parity tests, shared by the plugins whose tests compare
//! against pytorch-metric-learning on the same embeddings (each test file keeps the PML
//! values and the Python snippet that made them).

use crate::tuples::{Pairs, Tuples};

pub mod margin_softmax {
    //! The batch of the margin-softmax parity tests (`norm_softmax`, `cosface`, `arcface`,
    //! `sub_center_arcface`): 8 embeddings of dimension 4 over 3 classes, and class weights W
    //! (d×C = 4×3, PML's layout).

    /// Embeddings, 8×4 row-major.
    pub const Z: [f32; 32] = [
        0.9, -0.2, 0.4, 1.1, -0.5, 1.3, 0.2, -0.7, 0.3, 0.8, -1.2, 0.1, -1.1, -0.2, 0.6, -0.3, 0.2, 1.0, 0.5, -0.4,
        0.7, -0.6, -0.9, 0.8, 1.2, 0.1, -0.3, 0.9, -0.4, 0.9, 1.1, 0.0,
    ];

    /// Labels of the 8 rows.
    pub const LABELS: [i64; 8] = [0, 1, 2, 0, 1, 2, 0, 1];

    /// Class weights, 4×3 row-major.
    pub const W: [f32; 12] = [1.0, -0.3, 0.2, 0.2, 1.1, 0.4, -0.5, 0.1, -1.3, 0.3, -0.8, 0.5];
}

pub mod lifted {
    //! The batch of the `circle`, `lifted_structure` and `generalized_lifted_structure`
    //! parity tests: 8 embeddings of dimension 4, 3 classes, and mined pairs.
    use super::{Pairs, Tuples};

    /// Embeddings, 8×4 row-major.
    pub const Z: [f32; 32] = [
        0.31, -1.20, 0.57, 0.88, 0.12, -0.95, 1.03, 0.44, -0.61, 0.25, 0.72, -1.37, 1.45, 0.33, -0.28, 0.09, 0.97,
        0.81, -0.66, -0.14, -0.23, 1.12, 0.49, 0.35, -1.08, 0.54, -0.17, 0.62, 0.05, -0.42, -1.31, 0.76,
    ];

    /// Labels of the 8 rows.
    pub const LABELS: [i64; 8] = [0, 0, 0, 1, 1, 2, 2, 2];

    /// Mined pairs, with (0, 1) and (0, 3) listed twice.
    pub fn mined() -> Tuples {
        Tuples::Pairs(Pairs {
            a1: vec![0, 0, 3, 5, 0],
            p: vec![1, 1, 4, 7, 2],
            a2: vec![0, 1, 3, 3, 5, 0],
            n: vec![3, 5, 0, 6, 1, 3],
        })
    }
}

pub mod exact {
    //! The batch of the `fast_ap` and `n_pairs` parity tests: 8 embeddings of dimension 4,
    //! every value exact in f32 and f64, 3 classes, and mined pairs. Its squared distances lie
    //! at least 3e-3 from every FastAP bin centre of the configurations compared, so no
    //! comparison sits on a kink.
    use super::{Pairs, Tuples};

    /// Embeddings, 8×4 row-major.
    pub const Z: [f32; 32] = [
        0.5, -0.25, 1.0, 0.125, 0.75, 0.5, -0.375, 1.25, -1.0, 0.25, 0.5, -0.5, 0.25, 1.5, -0.75, 0.375, -0.625, -1.0,
        0.25, 0.875, 1.125, 0.375, 0.625, -0.25, -0.375, 0.875, -1.25, 0.5, 0.875, -0.5, -0.125, -1.0,
    ];

    /// Labels of the 8 rows.
    pub const LABELS: [i64; 8] = [2, 0, 1, 0, 2, 1, 0, 1];

    /// Mined pairs: labels first met in the order 0, 2, 1 (pairs (3, 6), (0, 4), (5, 2)); (1, 3)
    /// and (4, 0) repeat labels already taken.
    pub fn mined() -> Tuples {
        Tuples::Pairs(Pairs { a1: vec![3, 6, 0, 5, 1, 4], p: vec![6, 3, 4, 2, 3, 0], a2: vec![3, 0], n: vec![2, 1] })
    }
}

pub mod proxies {
    //! The batch of the `margin`, `proxy_nca`, `proxy_anchor` and `soft_triple` parity
    //! tests: 8 embeddings of dimension 4, every value exact in f32 and f64, 3 classes, and the
    //! mined pairs of the three proxy losses.
    use super::{Pairs, Tuples};

    /// Embeddings, 8×4 row-major.
    pub const Z: [f32; 32] = [
        0.25, -0.5, 0.75, 1.0, -0.625, 0.125, 0.5, -0.25, 1.0, 0.375, -0.75, 0.5, 0.125, 1.25, 0.25, -0.375, -0.875,
        -0.25, 0.625, 0.75, 0.5, 0.625, 1.125, -0.125, -0.25, -1.0, -0.5, 0.875, 0.75, -0.125, 0.25, -1.125,
    ];

    /// Labels of the 8 rows.
    pub const LABELS: [i64; 8] = [0, 2, 1, 0, 2, 1, 1, 0];

    /// Mined pairs of the proxy losses' parity tests.
    pub fn mined() -> Tuples {
        Tuples::Pairs(Pairs { a1: vec![0, 3, 3, 5], p: vec![3, 7, 0, 6], a2: vec![0, 1, 4], n: vec![2, 5, 6] })
    }
}

pub mod ntxent {
    //! The batch of the `ntxent` and `supcon` parity tests: 8 embeddings of dimension 4, 3
    //! classes, and mined pairs.
    use super::{Pairs, Tuples};

    /// Embeddings, 8×4 row-major.
    pub const Z: [f32; 32] = [
        0.9, -0.2, 0.4, 0.1, 0.7, 0.1, 0.5, -0.3, 0.2, -0.8, 0.3, 0.6, -0.5, 0.4, 0.9, 0.2, //
        -0.3, 0.6, 0.2, -0.7, 0.1, 0.3, -0.9, 0.4, 0.5, -0.6, -0.4, -0.2, -0.8, -0.1, -0.3, 0.5,
    ];

    /// Labels of the 8 rows.
    pub const LABELS: [i64; 8] = [0, 0, 0, 1, 1, 2, 2, 2];

    /// Mined pairs: (0, 1) and (0, 3) twice, anchor 6 with a positive but no negative, anchor 1
    /// with a negative but no positive.
    pub fn mined() -> Tuples {
        Tuples::Pairs(Pairs {
            a1: vec![0, 0, 3, 5, 0, 6],
            p: vec![1, 2, 4, 6, 1, 7],
            a2: vec![0, 0, 3, 5, 1, 0],
            n: vec![3, 5, 0, 1, 7, 3],
        })
    }
}
