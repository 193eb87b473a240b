//! Mined tuples as Rust values, in pytorch-metric-learning's convention: the two forms,
//! their conversion and enumeration, and the check of a set of tuples against a batch's
//! labels. The SDK (for plugins) and the host (for what plugins return) both use this crate;
//! it depends on nothing.
//!
//! Triplets are three index arrays (a, p, n): anchor, positive (same label, not the anchor
//! itself) and negative (other label). Pairs are four arrays (a1, p, a2, n): positive pairs
//! (a1\[i\], p\[i\]) and negative pairs (a2\[j\], n\[j\]), with independent counts.
//!
//! ```
//! use dmlbench_tuples::{all_pairs, all_triplets};
//! let labels = [0, 0, 1];
//! let pairs = all_pairs(&labels);
//! assert_eq!((pairs.a1, pairs.p), (vec![0, 1], vec![1, 0]));
//! assert_eq!(pairs.a2.len(), 4); // (0,2) (1,2) (2,0) (2,1)
//! let triplets = all_triplets(&labels);
//! assert_eq!((triplets.a, triplets.p, triplets.n), (vec![0, 1], vec![1, 0], vec![2, 2]));
//! ```

use std::fmt;

/// Tuples that do not fit their batch: the message names the tuple and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TupleError(pub String);

impl fmt::Display for TupleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TupleError {}

type Result<T> = std::result::Result<T, TupleError>;

/// Triplets (a, p, n) of batch indices; the three vectors have the same length.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Triplets {
    /// Anchors.
    pub a: Vec<u32>,
    /// Positives: same label as the anchor, never the anchor itself.
    pub p: Vec<u32>,
    /// Negatives: another label than the anchor's.
    pub n: Vec<u32>,
}

/// Pairs (a1, p, a2, n): positive pairs (a1\[i\], p\[i\]) and negative pairs (a2\[j\], n\[j\]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pairs {
    /// Anchors of positive pairs.
    pub a1: Vec<u32>,
    /// Positives.
    pub p: Vec<u32>,
    /// Anchors of negative pairs.
    pub a2: Vec<u32>,
    /// Negatives.
    pub n: Vec<u32>,
}

/// Either form of mined tuples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tuples {
    /// Triplets.
    Triplets(Triplets),
    /// Pairs.
    Pairs(Pairs),
}

/// The two forms, as a plain tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TupleForm {
    /// (a, p, n).
    Triplets,
    /// (a1, p, a2, n).
    Pairs,
}

/// The rows tuples index. Anchors (`a`, `a1`, `a2`) are rows of the batch; positives and
/// negatives (`p`, `n`) are rows of the reference set, which is the batch itself unless a loss
/// is given references (a cross-batch memory, or reference embeddings of its own).
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    /// Label of each batch row.
    pub labels: &'a [i64],
    /// Label of each reference row.
    pub reference_labels: &'a [i64],
    /// Which reference row is a batch row itself, and so never its positive.
    pub self_rows: SelfRows<'a>,
}

/// Which reference row, if any, holds each batch row's own embedding.
#[derive(Clone, Copy, Debug)]
pub enum SelfRows<'a> {
    /// The references are the batch: row i is itself.
    Same,
    /// Batch row i is reference row `rows[i]` (a memory that holds the current batch).
    Given(&'a [u32]),
    /// No reference row is a batch row.
    None,
}

impl<'a> Rows<'a> {
    /// A batch compared with itself.
    pub fn batch(labels: &'a [i64]) -> Self {
        Rows { labels, reference_labels: labels, self_rows: SelfRows::Same }
    }

    /// Checks given self rows ([`SelfRows::Given`]): one per batch row, each a reference row
    /// with that batch row's label. The other two kinds hold nothing to check.
    pub fn check_self_rows(&self) -> Result<()> {
        let SelfRows::Given(rows) = self.self_rows else { return Ok(()) };
        if rows.len() != self.labels.len() {
            return Err(TupleError(format!("{} self rows for a batch of {}", rows.len(), self.labels.len())));
        }
        for (i, &r) in rows.iter().enumerate() {
            let Some(&label) = self.reference_labels.get(r as usize) else {
                return Err(TupleError(format!(
                    "self row of batch row {i} is {r}, out of range for {} references",
                    self.reference_labels.len()
                )));
            };
            if label != self.labels[i] {
                return Err(TupleError(format!(
                    "batch row {i} has label {} but its self row {r} has label {label}",
                    self.labels[i]
                )));
            }
        }
        Ok(())
    }

    /// Whether reference row `r` is batch row `a` itself.
    pub fn is_self(&self, a: usize, r: usize) -> bool {
        match self.self_rows {
            SelfRows::Same => a == r,
            SelfRows::Given(rows) => rows[a] as usize == r,
            SelfRows::None => false,
        }
    }
}

impl Triplets {
    /// Number of triplets.
    pub fn len(&self) -> usize {
        self.a.len()
    }

    /// Whether there is no triplet.
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// Pairs made of each triplet's (a, p) and (a, n), as PML's `convert_to_pairs`.
    /// Duplicates are kept: a pair used by several triplets counts several times.
    pub fn to_pairs(&self) -> Pairs {
        Pairs { a1: self.a.clone(), p: self.p.clone(), a2: self.a.clone(), n: self.n.clone() }
    }
}

impl Pairs {
    /// Row weights of a batch of `n` from these pairs, as PML's `convert_to_weights`: how often
    /// each row appears in the four lists, divided by the largest count; all ones when every
    /// list is empty. Losses that take mined tuples as row weights (the proxy losses) use it.
    pub fn row_weights(&self, n: usize) -> Vec<f64> {
        weights_from(n, [&self.a1, &self.p, &self.a2, &self.n])
    }

    /// As [`row_weights`](Self::row_weights), counting only the anchors (`a1`, `a2`): PML's
    /// `convert_to_weights` when the loss has a reference set of its own (ProxyNCA's proxies).
    pub fn anchor_weights(&self, n: usize) -> Vec<f64> {
        weights_from(n, [&self.a1, &self.a2])
    }

    /// Number of positive pairs.
    pub fn positives(&self) -> usize {
        self.a1.len()
    }

    /// Number of negative pairs.
    pub fn negatives(&self) -> usize {
        self.a2.len()
    }

    /// Triplets joining every positive pair with every negative pair of the same anchor, as
    /// PML's `convert_to_triplets`. Ordered by positive pair, then by negative pair.
    pub fn to_triplets(&self) -> Triplets {
        // Group negatives by anchor once, so the join is linear in its output.
        let max_anchor = self.a1.iter().chain(&self.a2).copied().max().map_or(0, |m| m as usize + 1);
        let mut negatives_of: Vec<Vec<u32>> = vec![Vec::new(); max_anchor];
        for (&a, &n) in self.a2.iter().zip(&self.n) {
            negatives_of[a as usize].push(n);
        }
        let mut out = Triplets::default();
        for (&a, &p) in self.a1.iter().zip(&self.p) {
            for &n in &negatives_of[a as usize] {
                out.a.push(a);
                out.p.push(p);
                out.n.push(n);
            }
        }
        out
    }
}

/// How often each of `n` rows appears in `lists`, divided by the largest count; all ones when
/// no row appears.
fn weights_from<const K: usize>(n: usize, lists: [&Vec<u32>; K]) -> Vec<f64> {
    let mut counts = vec![0usize; n];
    for list in lists {
        for &i in list {
            counts[i as usize] += 1;
        }
    }
    let most = counts.iter().copied().max().unwrap_or(0);
    if most == 0 {
        return vec![1.0; n];
    }
    counts.iter().map(|&c| c as f64 / most as f64).collect()
}

impl Tuples {
    /// The form of these tuples.
    pub fn form(&self) -> TupleForm {
        match self {
            Tuples::Triplets(_) => TupleForm::Triplets,
            Tuples::Pairs(_) => TupleForm::Pairs,
        }
    }

    /// These tuples as triplets (converting pairs).
    pub fn into_triplets(self) -> Triplets {
        match self {
            Tuples::Triplets(t) => t,
            Tuples::Pairs(p) => p.to_triplets(),
        }
    }

    /// These tuples as pairs (converting triplets).
    pub fn into_pairs(self) -> Pairs {
        match self {
            Tuples::Triplets(t) => t.to_pairs(),
            Tuples::Pairs(p) => p,
        }
    }

    /// Converts to `form`.
    pub fn into_form(self, form: TupleForm) -> Tuples {
        match form {
            TupleForm::Triplets => Tuples::Triplets(self.into_triplets()),
            TupleForm::Pairs => Tuples::Pairs(self.into_pairs()),
        }
    }

    /// Checks every index against the batch: in range, positives share the anchor's label
    /// and are not the anchor, negatives do not share it. `what` names the tuples' origin in
    /// the message ("input tuples", "mined tuples").
    pub fn validate(&self, labels: &[i64], what: &str) -> Result<()> {
        self.validate_in(Rows::batch(labels), what)
    }

    /// [`validate`](Self::validate) for tuples whose positives and negatives are rows of
    /// `rows`' reference set.
    pub fn validate_in(&self, rows: Rows<'_>, what: &str) -> Result<()> {
        let (labels, reference_labels) = (rows.labels, rows.reference_labels);
        let check_index = |name: &str, i: usize, index: u32, len: usize, of: &str| -> Result<()> {
            if (index as usize) < len {
                Ok(())
            } else {
                Err(TupleError(format!("{what}: {name}[{i}] = {index} is out of range for {of} of {len}")))
            }
        };
        let of_references = if matches!(rows.self_rows, SelfRows::Same) { "a batch" } else { "references" };
        let check_pair = |i: usize, a: u32, x: u32, name: &str| -> Result<()> {
            check_index("a", i, a, labels.len(), "a batch")?;
            check_index(name, i, x, reference_labels.len(), of_references)
        };
        let check_positive = |i: usize, a: u32, p: u32| -> Result<()> {
            check_pair(i, a, p, "p")?;
            if rows.is_self(a as usize, p as usize) {
                return Err(TupleError(format!("{what}: positive {i} pairs index {a} with itself")));
            }
            if labels[a as usize] != reference_labels[p as usize] {
                return Err(TupleError(format!(
                    "{what}: positive {i} ({a}, {p}) has labels {} and {}",
                    labels[a as usize], reference_labels[p as usize]
                )));
            }
            Ok(())
        };
        let check_negative = |i: usize, a: u32, x: u32| -> Result<()> {
            check_pair(i, a, x, "n")?;
            if labels[a as usize] == reference_labels[x as usize] {
                return Err(TupleError(format!(
                    "{what}: negative {i} ({a}, {x}) has the same label {}",
                    labels[a as usize]
                )));
            }
            Ok(())
        };
        match self {
            Tuples::Triplets(t) => {
                if t.p.len() != t.a.len() || t.n.len() != t.a.len() {
                    return Err(TupleError(format!(
                        "{what}: triplet arrays have different lengths (a {}, p {}, n {})",
                        t.a.len(),
                        t.p.len(),
                        t.n.len()
                    )));
                }
                for i in 0..t.a.len() {
                    check_positive(i, t.a[i], t.p[i])?;
                    check_negative(i, t.a[i], t.n[i])?;
                }
            }
            Tuples::Pairs(pairs) => {
                if pairs.a1.len() != pairs.p.len() || pairs.a2.len() != pairs.n.len() {
                    return Err(TupleError(format!(
                        "{what}: pair arrays have different lengths (a1 {}, p {}, a2 {}, n {})",
                        pairs.a1.len(),
                        pairs.p.len(),
                        pairs.a2.len(),
                        pairs.n.len()
                    )));
                }
                for i in 0..pairs.a1.len() {
                    check_positive(i, pairs.a1[i], pairs.p[i])?;
                }
                for j in 0..pairs.a2.len() {
                    check_negative(j, pairs.a2[j], pairs.n[j])?;
                }
            }
        }
        Ok(())
    }
}

impl Tuples {
    /// These tuples without the positives that pair a batch row with its own reference row,
    /// as PML's `remove_self_comparisons` after a miner compared a batch with a memory that
    /// holds it. Negatives are kept (a row is never its own negative).
    pub fn without_self_comparisons(self, rows: Rows<'_>) -> Tuples {
        let keep = |a: u32, p: u32| !rows.is_self(a as usize, p as usize);
        match self {
            Tuples::Triplets(t) => {
                let mut out = Triplets::default();
                for i in (0..t.len()).filter(|&i| keep(t.a[i], t.p[i])) {
                    out.a.push(t.a[i]);
                    out.p.push(t.p[i]);
                    out.n.push(t.n[i]);
                }
                Tuples::Triplets(out)
            }
            Tuples::Pairs(pairs) => {
                let (a1, p) = pairs.a1.iter().zip(&pairs.p).filter(|&(&a, &p)| keep(a, p)).unzip();
                Tuples::Pairs(Pairs { a1, p, a2: pairs.a2, n: pairs.n })
            }
        }
    }
}

/// Every ordered positive pair (i, j), i ≠ j, same label, and every ordered negative pair,
/// as PML's `get_all_pairs_indices`. Row-major order: by i, then j.
pub fn all_pairs(labels: &[i64]) -> Pairs {
    all_pairs_in(Rows::batch(labels))
}

/// Every triplet (a, p, n) with p ≠ a of a's label and n of another label, as PML's
/// `get_all_triplets_indices`. Ordered by a, then p, then n.
pub fn all_triplets(labels: &[i64]) -> Triplets {
    all_triplets_in(Rows::batch(labels))
}

/// [`all_pairs`] between batch rows and reference rows: every (batch row i, reference row j)
/// with j not i itself, positive when the labels agree (PML's `get_all_pairs_indices(labels,
/// ref_labels)` followed by `remove_self_comparisons` for a memory that holds the batch).
pub fn all_pairs_in(rows: Rows<'_>) -> Pairs {
    let mut out = Pairs::default();
    for (i, &li) in rows.labels.iter().enumerate() {
        for (j, &lj) in rows.reference_labels.iter().enumerate() {
            if rows.is_self(i, j) {
                continue;
            }
            if li == lj {
                out.a1.push(i as u32);
                out.p.push(j as u32);
            } else {
                out.a2.push(i as u32);
                out.n.push(j as u32);
            }
        }
    }
    out
}

/// [`all_triplets`] between batch rows (anchors) and reference rows (positives, negatives).
pub fn all_triplets_in(rows: Rows<'_>) -> Triplets {
    let mut out = Triplets::default();
    for (a, &la) in rows.labels.iter().enumerate() {
        for (p, &lp) in rows.reference_labels.iter().enumerate() {
            if rows.is_self(a, p) || lp != la {
                continue;
            }
            for (n, &ln) in rows.reference_labels.iter().enumerate() {
                if ln != la {
                    out.a.push(a as u32);
                    out.p.push(p as u32);
                    out.n.push(n as u32);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_pairs_counts_match_combinatorics() {
        // Classes of sizes 3, 2, 1: positives 3·2 + 2·1 = 8 ordered pairs; negatives
        // 6·5 − 8 = 22.
        let labels = [0, 0, 0, 1, 1, 2];
        let pairs = all_pairs(&labels);
        assert_eq!((pairs.positives(), pairs.negatives()), (8, 22));
        // Triplets: each positive pair × negatives of its anchor: a of class 0 has 3, class
        // 1 has 4 → 6·3 + 2·4 = 26.
        assert_eq!(all_triplets(&labels).len(), 26);
        assert_eq!(pairs.to_triplets(), all_triplets(&labels));
    }

    #[test]
    fn conversions_follow_pml() {
        let t = Triplets { a: vec![0, 0], p: vec![1, 1], n: vec![2, 3] };
        let pairs = t.to_pairs();
        assert_eq!(pairs, Pairs { a1: vec![0, 0], p: vec![1, 1], a2: vec![0, 0], n: vec![2, 3] });
        let pairs = Pairs { a1: vec![0, 4], p: vec![1, 5], a2: vec![0, 0, 4], n: vec![2, 3, 6] };
        let t = pairs.to_triplets();
        assert_eq!(t, Triplets { a: vec![0, 0, 4], p: vec![1, 1, 5], n: vec![2, 3, 6] });
    }

    #[test]
    fn validation_names_the_bad_tuple() {
        let labels = [0, 0, 1];
        let ok = Tuples::Triplets(Triplets { a: vec![0], p: vec![1], n: vec![2] });
        ok.validate(&labels, "input tuples").unwrap();
        let cases = [
            (Triplets { a: vec![0], p: vec![1], n: vec![3] }, "n[0] = 3 is out of range for a batch of 3"),
            (Triplets { a: vec![0], p: vec![0], n: vec![2] }, "pairs index 0 with itself"),
            (Triplets { a: vec![0], p: vec![2], n: vec![1] }, "positive 0 (0, 2) has labels 0 and 1"),
            (Triplets { a: vec![0], p: vec![1], n: vec![1] }, "negative 0 (0, 1) has the same label 0"),
        ];
        for (t, expected) in cases {
            let e = Tuples::Triplets(t).validate(&labels, "input tuples").unwrap_err();
            assert!(e.0.contains(expected), "{e} lacks {expected}");
        }
        let uneven = Tuples::Pairs(Pairs { a1: vec![0], p: vec![], a2: vec![], n: vec![] });
        assert!(uneven.validate(&labels, "x").unwrap_err().0.contains("different lengths"));
    }

    #[test]
    fn references_pair_batch_rows_with_reference_rows_except_themselves() {
        // Batch labels [0, 1]; a memory of four rows whose slots 2 and 0 hold the batch.
        let labels = [0, 1];
        let memory = [1, 0, 0, 1];
        let rows = Rows { labels: &labels, reference_labels: &memory, self_rows: SelfRows::Given(&[2, 0]) };
        let pairs = all_pairs_in(rows);
        // Row 0 (label 0): positive 1 (slot 2 is itself), negatives 0 and 3. Row 1 (label 1):
        // positive 3 (slot 0 is itself), negatives 1 and 2.
        assert_eq!((pairs.a1.clone(), pairs.p.clone()), (vec![0, 1], vec![1, 3]));
        assert_eq!((pairs.a2.clone(), pairs.n.clone()), (vec![0, 0, 1, 1], vec![0, 3, 1, 2]));
        let triplets = all_triplets_in(rows);
        assert_eq!(triplets, Triplets { a: vec![0, 0, 1, 1], p: vec![1, 1, 3, 3], n: vec![0, 3, 1, 2] });
        assert_eq!(pairs.to_triplets(), triplets);
        Tuples::Pairs(pairs).validate_in(rows, "x").unwrap();
        // Without self rows, slot 2 is an ordinary positive of row 0.
        let unrelated = Rows { self_rows: SelfRows::None, ..rows };
        assert_eq!(all_pairs_in(unrelated).p, vec![1, 2, 0, 3]);
    }

    #[test]
    fn self_comparisons_are_removed_and_refused() {
        let labels = [0, 1];
        let memory = [1, 0, 0, 1];
        let rows = Rows { labels: &labels, reference_labels: &memory, self_rows: SelfRows::Given(&[2, 0]) };
        let mined = Tuples::Triplets(Triplets { a: vec![0, 0, 1], p: vec![2, 1, 0], n: vec![3, 3, 1] });
        let e = mined.validate_in(rows, "mined tuples").unwrap_err();
        assert!(e.0.contains("positive 0 pairs index 0 with itself"), "{e}");
        let kept = mined.without_self_comparisons(rows);
        assert_eq!(kept, Tuples::Triplets(Triplets { a: vec![0], p: vec![1], n: vec![3] }));
        kept.validate_in(rows, "mined tuples").unwrap();
        let pairs = Tuples::Pairs(Pairs { a1: vec![1, 1], p: vec![0, 3], a2: vec![0], n: vec![0] });
        let kept = pairs.without_self_comparisons(rows);
        assert_eq!(kept, Tuples::Pairs(Pairs { a1: vec![1], p: vec![3], a2: vec![0], n: vec![0] }));
        let out_of_range = Tuples::Pairs(Pairs { a1: vec![], p: vec![], a2: vec![0], n: vec![4] });
        let e = out_of_range.validate_in(rows, "x").unwrap_err();
        assert!(e.0.contains("n[0] = 4 is out of range for references of 4"), "{e}");
    }

    #[test]
    fn row_weights_count_appearances_relative_to_the_most() {
        let pairs = Pairs { a1: vec![0, 0], p: vec![1, 1], a2: vec![0], n: vec![3] };
        // Row 0 appears 3 times, row 1 twice, row 3 once, row 2 never.
        assert_eq!(pairs.row_weights(4), vec![1.0, 2.0 / 3.0, 0.0, 1.0 / 3.0]);
        assert_eq!(Pairs::default().row_weights(2), vec![1.0, 1.0]);
        // Anchors only: row 0 three times, nothing else.
        assert_eq!(pairs.anchor_weights(4), vec![1.0, 0.0, 0.0, 0.0]);
    }
}
