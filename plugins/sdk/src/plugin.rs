//! The traits a plugin implements: [`Plugin`] for what every plugin has, then [`Loss`] or
//! [`Miner`].
//!
//! A plugin holds only its formula. The SDK parses its configuration, checks every input
//! (shapes, lengths, NaN/Inf, label range, tuple indices) before calling it and every output
//! (finite loss and gradient, valid tuples) after, converts mined tuples to the form the loss
//! wants, and reports errors and panics to the host.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::matrix::MatRef;
use crate::tuples::{Pairs, Rows, SelfRows, Triplets, TupleForm, Tuples, all_pairs_in, all_triplets_in};

/// What `new` learns about the run it is created for.
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    /// Embedding size d of every batch.
    pub embedding_dim: usize,
    /// Number of training classes; labels lie in `0..num_classes` (0 when unknown, for
    /// example when a loss is evaluated on a file of embeddings).
    pub num_classes: usize,
    /// Seed for every random choice; the same seed gives the same results.
    pub seed: u64,
    /// The experiment's base learning rate.
    pub base_lr: f64,
}

/// One checked batch, as a plugin sees it.
#[derive(Clone, Debug)]
pub struct Batch<'a> {
    /// n×d embeddings, finite.
    pub embeddings: MatRef<'a>,
    /// n labels (in `0..num_classes` when the context knows the class count).
    pub labels: &'a [i64],
    /// Mined tuples, already validated and converted to the loss's [`TupleUse`] form.
    /// Always `None` for miners and for losses that ignore tuples.
    pub tuples: Option<Tuples>,
    /// Reference embeddings the batch is compared with instead of itself (a cross-batch
    /// memory); only ever `Some` for plugins that declare `ACCEPTS_REFERENCES`.
    pub references: Option<References<'a>>,
}

/// Reference embeddings beside a batch, checked: same embedding size, finite, labels in range.
///
/// With references, anchors are batch rows and positives and negatives are reference rows;
/// a loss's gradient is for the batch only, the references being constants (as PML's
/// `ref_emb`, which a cross-batch memory fills with detached embeddings).
#[derive(Clone, Copy, Debug)]
pub struct References<'a> {
    /// m×d embeddings.
    pub embeddings: MatRef<'a>,
    /// m labels.
    pub labels: &'a [i64],
    /// For each batch row, the reference row holding its own embedding, when the references
    /// contain the batch (a memory does): never that row's positive.
    pub self_rows: Option<&'a [u32]>,
}

impl<'a> Batch<'a> {
    /// The rows a pair or triplet joins: batch rows as anchors, and the references (or the
    /// batch itself) as positives and negatives.
    pub fn rows(&self) -> Rows<'a> {
        match &self.references {
            None => Rows::batch(self.labels),
            Some(r) => Rows {
                labels: self.labels,
                reference_labels: r.labels,
                self_rows: r.self_rows.map_or(SelfRows::None, SelfRows::Given),
            },
        }
    }

    /// The embeddings positives and negatives are taken from: the references, else the batch.
    pub fn reference_embeddings(&self) -> MatRef<'a> {
        self.references.as_ref().map_or(self.embeddings, |r| r.embeddings)
    }

    /// Number of rows positives and negatives are taken from (m; n without references).
    pub fn reference_count(&self) -> usize {
        self.references.as_ref().map_or(self.n(), |r| r.labels.len())
    }
}

impl Batch<'_> {
    /// The mined pairs, when a miner ran: as mined, or split from triplets as PML's
    /// `convert_to_pairs`. `None` when no tuples were given.
    pub fn mined_pairs(&self) -> Option<Cow<'_, Pairs>> {
        match self.tuples.as_ref()? {
            Tuples::Pairs(p) => Some(Cow::Borrowed(p)),
            Tuples::Triplets(t) => Some(Cow::Owned(t.to_pairs())),
        }
    }

    /// The mined triplets, when a miner ran: as mined, or joined from pairs as PML's
    /// `convert_to_triplets`. `None` when no tuples were given.
    pub fn mined_triplets(&self) -> Option<Cow<'_, Triplets>> {
        match self.tuples.as_ref()? {
            Tuples::Triplets(t) => Some(Cow::Borrowed(t)),
            Tuples::Pairs(p) => Some(Cow::Owned(p.to_triplets())),
        }
    }

    /// The pairs a pair loss uses: the mined ones, else every ordered pair of the batch
    /// (PML's `get_all_pairs_indices`), or of batch and references without self comparisons.
    pub fn pairs(&self) -> Cow<'_, Pairs> {
        self.mined_pairs().unwrap_or_else(|| Cow::Owned(all_pairs_in(self.rows())))
    }

    /// The triplets a triplet loss uses: the mined ones, else every triplet of the batch
    /// (PML's `get_all_triplets_indices`), or of batch and references.
    pub fn triplets(&self) -> Cow<'_, Triplets> {
        self.mined_triplets().unwrap_or_else(|| Cow::Owned(all_triplets_in(self.rows())))
    }

    /// Number of embeddings.
    pub fn n(&self) -> usize {
        self.embeddings.rows
    }

    /// Embedding size.
    pub fn d(&self) -> usize {
        self.embeddings.cols
    }
}

/// Named statistics of one call ("active_pairs", "skipped_anchors"...), reported to the host
/// with the result. Recording a name twice keeps the last value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    entries: Vec<(String, f64)>,
}

impl Stats {
    /// Records `value` under `name`.
    pub fn record(&mut self, name: &str, value: f64) {
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.to_string(), value)),
        }
    }

    /// The value recorded under `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// Every (name, value), in recording order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

/// What every plugin declares and does.
pub trait Plugin: Sized + Send + 'static {
    /// The configuration, parsed from RON. Use `#[serde(default, deny_unknown_fields)]` so
    /// that omitted fields take their defaults and misspelt ones are errors.
    type Config: Serialize + DeserializeOwned + Default;

    /// Identifier, unique within the plugin's kind: lowercase ASCII letters, digits and `_`,
    /// starting with a letter.
    const ID: &'static str;
    /// Human-readable name.
    const NAME: &'static str;
    /// Version of the plugin; `env!("CARGO_PKG_VERSION")` is the usual choice.
    const VERSION: &'static str;
    /// One line: what it computes, and its source.
    const SUMMARY: &'static str;
    /// Whether [`Plugin::save`] and [`Plugin::load`] are implemented.
    const HAS_STATE: bool = false;

    /// Creates an instance. Reject invalid values with [`Error::bad_config`] naming the field.
    fn new(config: Self::Config, context: &Context) -> Result<Self>;

    /// The instance's state as bytes, for checkpoints (see [`crate::state`]).
    fn save(&self) -> Result<Vec<u8>> {
        Err(Error::unsupported(format!("plugin '{}' has no state to save", Self::ID)))
    }

    /// Restores state written by [`Plugin::save`].
    fn load(&mut self, _bytes: &[u8]) -> Result<()> {
        Err(Error::unsupported(format!("plugin '{}' has no state to load", Self::ID)))
    }
}

/// How a loss uses mined tuples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TupleUse {
    /// It never uses them; passing tuples is an error.
    Ignored,
    /// It uses them in this form when given (the SDK converts the other form), and every
    /// pair or triplet of the batch otherwise.
    Optional(TupleForm),
    /// It cannot run without them; they are converted to this form.
    Required(TupleForm),
}

/// A loss: a scalar from a batch of embeddings, and its gradient.
pub trait Loss: Plugin {
    /// How mined tuples are used.
    const TUPLES: TupleUse = TupleUse::Ignored;
    /// Whether the loss takes reference embeddings ([`Batch::references`]): it must then
    /// compare batch rows with [`Batch::reference_embeddings`] through [`Batch::pairs`],
    /// [`Batch::triplets`] or [`Batch::rows`], and return the gradient of the batch only.
    const ACCEPTS_REFERENCES: bool = false;
    /// Whether the loss owns trainable parameters updated in [`Loss::step`].
    const OWNS_PARAMETERS: bool = false;
    /// Whether the loss is piecewise smooth with kinks it can name: then every call records
    /// the piece its input lies on with [`Piece`](crate::piece::Piece), and gradient checks
    /// never difference across a kink (ABI capability `PIECEWISE_SMOOTH`).
    const PIECEWISE_SMOOTH: bool = false;

    /// Computes the loss of `batch` and writes dL/dZ into `grad` (n×d, row-major, zeroed
    /// before the call). A degenerate batch (no positive pair, one class...) should give 0
    /// and a zero gradient, with a statistic saying so.
    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64>;

    /// Updates the loss's own parameters from the last gradients, with its learning rate
    /// times `lr_scale`.
    fn step(&mut self, _lr_scale: f64) -> Result<()> {
        Ok(())
    }
}

/// A miner: tuples of batch indices, chosen from the embeddings and labels.
pub trait Miner: Plugin {
    /// The form of the tuples [`Miner::mine`] returns.
    const OUTPUT: TupleForm;
    /// Whether the miner can mine against reference embeddings ([`Batch::references`]):
    /// anchors from the batch, positives and negatives from the references. As PML's miners
    /// given `ref_emb`, it need not avoid a row's own copy in a memory: the SDK removes those
    /// self comparisons from its output (PML's `remove_self_comparisons`).
    const ACCEPTS_REFERENCES: bool = false;

    /// Chooses tuples. They are checked afterwards: indices in range, positives share the
    /// anchor's label and are not the anchor, negatives do not, and their form is `OUTPUT`.
    fn mine(&mut self, batch: &Batch<'_>, stats: &mut Stats) -> Result<Tuples>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(tuples: Option<Tuples>) -> Batch<'static> {
        static Z: [f32; 4] = [0.0; 4];
        static LABELS: [i64; 4] = [0, 0, 1, 1];
        Batch { embeddings: MatRef::new(4, 1, &Z), labels: &LABELS, tuples, references: None }
    }

    #[test]
    fn tuples_come_in_the_form_asked_for() {
        let triplets = Triplets { a: vec![0, 0], p: vec![1, 1], n: vec![2, 3] };
        let mined = batch(Some(Tuples::Triplets(triplets.clone())));
        assert!(matches!(mined.mined_triplets(), Some(Cow::Borrowed(t)) if *t == triplets));
        assert_eq!(*mined.pairs(), triplets.to_pairs());
        let pairs = Pairs { a1: vec![0], p: vec![1], a2: vec![3], n: vec![0] };
        let mined = batch(Some(Tuples::Pairs(pairs.clone())));
        assert!(matches!(mined.mined_pairs(), Some(Cow::Borrowed(p)) if *p == pairs));
        assert_eq!(*mined.triplets(), pairs.to_triplets());
    }

    #[test]
    fn without_a_miner_every_tuple_of_the_batch_is_used() {
        let plain = batch(None);
        assert!(plain.mined_pairs().is_none() && plain.mined_triplets().is_none());
        assert_eq!(*plain.pairs(), crate::tuples::all_pairs(plain.labels));
        assert_eq!(plain.triplets().len(), 8, "2 anchors per class × 1 positive × 2 negatives × 2 classes");
    }
}
