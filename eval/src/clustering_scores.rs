//! Normalised and adjusted mutual information between two labellings, as scikit-learn 1.9
//! computes `normalized_mutual_info_score` and `adjusted_mutual_info_score` with their
//! default `average_method="arithmetic"`, special cases included:
//!
//! * both labellings with a single group (or empty): NMI = AMI = 1 (a perfect match);
//! * otherwise MI = 0 gives NMI = 0; one labelling with a single group gives AMI = 0;
//! * NMI = MI / ((H(U) + H(V)) / 2);
//! * AMI = (MI − E[MI]) / ((H(U) + H(V)) / 2 − E[MI]), with E[MI] the expected mutual
//!   information of two random labellings with the same group sizes (Vinh, Epps and Bailey,
//!   2010), numerator and denominator kept at least machine epsilon away from 0 with their
//!   sign, as scikit-learn does.
//!
//! Logarithms are natural. E[MI] depends on the group sizes only, so it is summed over
//! distinct (row size, column size) pairs weighted by how often each occurs: identical terms
//! to scikit-learn's sum over every pair of groups, thousands of times fewer on SOP.
//!
//! ```
//! use dmlbench_eval::clustering_scores::{ami, nmi};
//!
//! // A relabelled perfect clustering.
//! assert_eq!(nmi(&[0, 0, 1, 1], &[1, 1, 0, 0]), 1.0);
//! // Every member of one class in its own cluster: no information.
//! assert_eq!(nmi(&[0, 0, 0, 0], &[0, 1, 2, 3]), 0.0);
//! assert_eq!(ami(&[0, 0, 0, 0], &[0, 1, 2, 3]), 0.0);
//! ```

use std::collections::HashMap;

/// Number of distinct values.
pub fn distinct_count<T: Ord + Copy>(labels: &[T]) -> usize {
    let mut sorted = labels.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len()
}

/// The contingency table of two labellings in sparse form.
struct Contingency {
    n: usize,
    /// Size of each group of the first labelling.
    rows: Vec<u64>,
    /// Size of each group of the second labelling.
    cols: Vec<u64>,
    /// Non-zero cells as (row, column, count).
    cells: Vec<(usize, usize, u64)>,
}

/// Dense ids `0..groups` for arbitrary labels, in sorted label order.
fn dense_ids<T: Ord + Copy>(labels: &[T]) -> (Vec<usize>, usize) {
    let mut distinct = labels.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let ids = labels.iter().map(|l| distinct.binary_search(l).expect("label is present")).collect();
    (ids, distinct.len())
}

fn contingency<A: Ord + Copy, B: Ord + Copy>(truth: &[A], predicted: &[B]) -> Contingency {
    assert_eq!(
        truth.len(),
        predicted.len(),
        "clustering scores: {} true labels but {} predicted labels",
        truth.len(),
        predicted.len()
    );
    let (r, nr) = dense_ids(truth);
    let (c, nc) = dense_ids(predicted);
    let mut rows = vec![0u64; nr];
    let mut cols = vec![0u64; nc];
    let mut counts: HashMap<(usize, usize), u64> = HashMap::new();
    for (&i, &j) in r.iter().zip(&c) {
        rows[i] += 1;
        cols[j] += 1;
        *counts.entry((i, j)).or_default() += 1;
    }
    let mut cells: Vec<(usize, usize, u64)> = counts.into_iter().map(|((i, j), v)| (i, j, v)).collect();
    // A fixed order, so sums do not depend on the hash map's iteration order.
    cells.sort_unstable();
    Contingency { n: truth.len(), rows, cols, cells }
}

/// Entropy of a labelling given its group sizes.
fn entropy(sizes: &[u64]) -> f64 {
    if sizes.len() <= 1 {
        return 0.0;
    }
    let total: f64 = sizes.iter().map(|&s| s as f64).sum();
    let log_total = total.ln();
    -sizes
        .iter()
        .map(|&s| {
            let p = s as f64;
            (p / total) * (p.ln() - log_total)
        })
        .sum::<f64>()
}

/// Mutual information, with scikit-learn's rounding of tiny terms to zero.
fn mutual_information(t: &Contingency) -> f64 {
    if t.rows.len() == 1 || t.cols.len() == 1 {
        return 0.0;
    }
    let n = t.n as f64;
    let log_n = n.ln();
    let sum: f64 = t
        .cells
        .iter()
        .map(|&(i, j, v)| {
            let v = v as f64;
            let p = v / n;
            let outer = (t.rows[i] * t.cols[j]) as f64;
            let term = p * (v.ln() - log_n) + p * (-outer.ln() + log_n + log_n);
            if term.abs() < f64::EPSILON { 0.0 } else { term }
        })
        .sum();
    sum.max(0.0)
}

/// `ln(m!)` for `m = 0..=n`: exact sums of logarithms for small `m`, where Stirling's series
/// is least accurate, and the series (to `m⁻⁷`, error below `1e-17` from `m = 32` on)
/// above, which avoids the rounding a running sum would accumulate over 60,000 terms.
fn log_factorials(n: usize) -> Vec<f64> {
    let mut table = Vec::with_capacity(n + 1);
    let mut running = 0.0f64;
    for m in 0..=n {
        if m < 32 {
            if m > 1 {
                running += (m as f64).ln();
            }
            table.push(running);
        } else {
            let x = m as f64;
            let inv = 1.0 / x;
            let inv2 = inv * inv;
            let series = inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)));
            table.push(x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + series);
        }
    }
    table
}

/// Sizes with their multiplicities, in increasing size.
fn size_histogram(sizes: &[u64]) -> Vec<(u64, f64)> {
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u64, f64)> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some((size, count)) if *size == s => *count += 1.0,
            _ => out.push((s, 1.0)),
        }
    }
    out
}

/// Expected mutual information of two labellings drawn at random with the contingency's
/// group sizes (hypergeometric model).
fn expected_mutual_information(t: &Contingency) -> f64 {
    if t.rows.len() == 1 || t.cols.len() == 1 {
        return 0.0;
    }
    let n = t.n as u64;
    let nf = n as f64;
    let lf = log_factorials(t.n);
    let lf = |m: u64| lf[m as usize];
    let mut emi = 0.0;
    for &(a, a_count) in &size_histogram(&t.rows) {
        for &(b, b_count) in &size_histogram(&t.cols) {
            let start = (a + b).saturating_sub(n).max(1);
            let end = a.min(b);
            let fixed = lf(a) + lf(b) + lf(n - a) + lf(n - b) - lf(n);
            let log_ab = (a as f64).ln() + (b as f64).ln();
            let mut sum = 0.0;
            for nij in start..=end {
                let x = nij as f64;
                let log_term = nf.ln() + x.ln() - log_ab;
                let log_prob = fixed - lf(nij) - lf(a - nij) - lf(b - nij) - lf(n + nij - a - b);
                sum += (x / nf) * log_term * log_prob.exp();
            }
            emi += a_count * b_count * sum;
        }
    }
    emi
}

fn both_single_or_empty(t: &Contingency) -> bool {
    (t.rows.len() == 1 && t.cols.len() == 1) || (t.rows.is_empty() && t.cols.is_empty())
}

/// Normalised mutual information with arithmetic normalisation.
///
/// # Panics
/// If the two labellings differ in length.
pub fn nmi<A: Ord + Copy, B: Ord + Copy>(truth: &[A], predicted: &[B]) -> f64 {
    let t = contingency(truth, predicted);
    if both_single_or_empty(&t) {
        return 1.0;
    }
    let mi = mutual_information(&t);
    if mi == 0.0 {
        return 0.0;
    }
    mi / ((entropy(&t.rows) + entropy(&t.cols)) / 2.0)
}

/// Adjusted mutual information with arithmetic normalisation.
///
/// # Panics
/// If the two labellings differ in length.
pub fn ami<A: Ord + Copy, B: Ord + Copy>(truth: &[A], predicted: &[B]) -> f64 {
    let t = contingency(truth, predicted);
    if both_single_or_empty(&t) {
        return 1.0;
    }
    if t.rows.len() == 1 || t.cols.len() == 1 {
        return 0.0;
    }
    let mi = mutual_information(&t);
    let emi = expected_mutual_information(&t);
    let normaliser = (entropy(&t.rows) + entropy(&t.cols)) / 2.0;
    // Away from zero with their sign, so a perfect match (MI = E[MI] = H) does not give 0/0.
    let away_from_zero = |v: f64| {
        if v < 0.0 { v.min(-f64::EPSILON) } else { v.max(f64::EPSILON) }
    };
    away_from_zero(mi - emi) / away_from_zero(normaliser - emi)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from scikit-learn 1.9.1 (NumPy 2.4.6, Python 3.11), printed by:
    //
    //     from sklearn.metrics import normalized_mutual_info_score as nmi
    //     from sklearn.metrics import adjusted_mutual_info_score as ami
    //
    //     def lcg(seed):
    //         s = seed
    //         while True:
    //             s = (s * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
    //             yield s >> 33
    //
    //     def noisy(n, classes, clusters, keep, seed):
    //         g = lcg(seed)
    //         t = [next(g) % classes for _ in range(n)]
    //         p = [x if next(g) % 100 < keep else next(g) % clusters for x in t]
    //         return t, p
    //
    //     cases = {
    //         "small": ([0, 0, 0, 1, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2, 2, 0]),
    //         "unequal": ([5, 5, 5, 5, 5, 9, 9, 7, 7, 7, 1], [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3]),
    //         "split": ([0, 0, 0, 0, 1, 1, 1, 1], [0, 1, 2, 3, 4, 5, 6, 7]),
    //         "noisy_500": noisy(500, 40, 45, 60, 1),
    //         "many_small_3000": noisy(3000, 600, 600, 70, 2),
    //     }
    //     for name, (t, p) in cases.items():
    //         print(name, repr(nmi(t, p)), repr(ami(t, p)))
    const REFERENCE: [(&str, f64, f64); 5] = [
        ("small", 0.3987478202411471, 0.07271978991886596),
        ("unequal", 0.5872682013795945, 0.3137250312311118),
        ("split", 0.49999999999999983, 9.610279511444742e-16),
        ("noisy_500", 0.6429651345450214, 0.4367616299075284),
        ("many_small_3000", 0.8869477941824755, 0.5840261054107466),
    ];

    /// The generator of the script above.
    fn noisy(n: usize, classes: u64, clusters: u64, keep: u64, seed: u64) -> (Vec<u64>, Vec<u64>) {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            s >> 33
        };
        let truth: Vec<u64> = (0..n).map(|_| next() % classes).collect();
        let predicted = truth.iter().map(|&t| if next() % 100 < keep { t } else { next() % clusters }).collect();
        (truth, predicted)
    }

    fn case(name: &str) -> (Vec<u64>, Vec<u64>) {
        match name {
            "small" => (vec![0, 0, 0, 1, 1, 1, 2, 2], vec![0, 0, 1, 1, 2, 2, 2, 0]),
            "unequal" => (vec![5, 5, 5, 5, 5, 9, 9, 7, 7, 7, 1], vec![0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3]),
            "split" => (vec![0, 0, 0, 0, 1, 1, 1, 1], vec![0, 1, 2, 3, 4, 5, 6, 7]),
            "noisy_500" => noisy(500, 40, 45, 60, 1),
            "many_small_3000" => noisy(3000, 600, 600, 70, 2),
            _ => unreachable!(),
        }
    }

    fn close(a: f64, b: f64, what: &str) {
        assert!((a - b).abs() < 1e-10, "{what}: {a} vs scikit-learn {b}");
    }

    #[test]
    fn agrees_with_scikit_learn() {
        for (name, want_nmi, want_ami) in REFERENCE {
            let (truth, predicted) = case(name);
            close(nmi(&truth, &predicted), want_nmi, &format!("{name} NMI"));
            close(ami(&truth, &predicted), want_ami, &format!("{name} AMI"));
        }
    }

    #[test]
    fn special_cases() {
        assert_eq!(nmi(&[3, 3, 3], &[7, 7, 7]), 1.0);
        assert_eq!(ami(&[3, 3, 3], &[7, 7, 7]), 1.0);
        assert_eq!(ami(&[3, 3, 3], &[0, 1, 1]), 0.0);
        assert_eq!(nmi::<i64, u32>(&[], &[]), 1.0);
        // A perfect match of several groups: MI = E[MI] is impossible, MI = H.
        close(ami(&[1, 1, 2, 2, 3], &[0, 0, 4, 4, 9]), 1.0, "perfect AMI");
    }

    #[test]
    fn log_factorials_agree_with_direct_sums() {
        let table = log_factorials(3000);
        assert_eq!(table.len(), 3001);
        let mut direct = 0.0f64;
        for (m, &logged) in table.iter().enumerate().skip(1) {
            direct += (m as f64).ln();
            assert!((logged - direct).abs() < 1e-9 * direct.max(1.0), "ln({m}!)");
        }
    }
}
