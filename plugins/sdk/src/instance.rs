//! A plugin instance behind every check the SDK makes.
//!
//! [`Instance`] is what the exported C functions drive, and what plugin tests drive
//! directly: the same validation runs in both, so a test of an instance is a test of what the
//! host will see.
//!
//! ```
//! # use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats};
//! # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Config {}
//! # struct SumLoss;
//! # impl Plugin for SumLoss {
//! #     type Config = Config;
//! #     const ID: &'static str = "sum"; const NAME: &'static str = "Sum";
//! #     const VERSION: &'static str = "0.1.0"; const SUMMARY: &'static str = "Σ z";
//! #     fn new(_: Config, _: &Context) -> Result<Self> { Ok(SumLoss) }
//! # }
//! # impl Loss for SumLoss {
//! #     fn forward_backward(&mut self, b: &Batch<'_>, g: &mut [f32], _: &mut Stats) -> Result<f64> {
//! #         g.fill(1.0);
//! #         Ok(b.embeddings.data.iter().map(|&v| f64::from(v)).sum())
//! #     }
//! # }
//! use dmlbench_sdk::Instance;
//! let context = Context { embedding_dim: 2, num_classes: 0, seed: 0, base_lr: 0.1 };
//! let mut loss = Instance::<SumLoss>::from_config_text("", context).unwrap();
//! let out = loss.forward_backward(&[1.0, 2.0, 3.0, 4.0], &[0, 1], None).unwrap();
//! assert_eq!((out.loss, out.grad), (10.0, vec![1.0; 4]));
//! let bad = loss.forward_backward(&[1.0, f32::NAN, 3.0, 4.0], &[0, 1], None).unwrap_err();
//! assert!(bad.message().contains("row 0, column 1"));
//! ```

use dmlbench_abi::{PIECE_STAT, first_non_finite};

use crate::error::{Error, Result};
use crate::matrix::MatRef;
use crate::plugin::{Batch, Context, Loss, Miner, Plugin, References, Stats, TupleUse};
use crate::tuples::{Rows, SelfRows, Tuples};

/// A plugin with its context, checked on every call.
pub struct Instance<T> {
    plugin: T,
    context: Context,
}

/// What a loss returned.
#[derive(Clone, Debug, PartialEq)]
pub struct LossValue {
    /// The loss.
    pub loss: f64,
    /// dL/dZ, n×d row-major.
    pub grad: Vec<f32>,
    /// Statistics of the call.
    pub stats: Stats,
}

/// Shape and buffers of one batch before any check.
#[derive(Clone, Copy, Debug)]
pub struct RawBatch<'a> {
    /// Claimed number of rows.
    pub n: usize,
    /// Claimed embedding size.
    pub d: usize,
    /// The embeddings buffer.
    pub embeddings: &'a [f32],
    /// The labels buffer.
    pub labels: &'a [i64],
    /// Reference embeddings beside the batch, if the host sent any.
    pub references: Option<RawReferences<'a>>,
}

/// Reference embeddings before any check (their row count is the label count).
#[derive(Clone, Copy, Debug)]
pub struct RawReferences<'a> {
    /// The embeddings buffer, m×d.
    pub embeddings: &'a [f32],
    /// The labels buffer, m.
    pub labels: &'a [i64],
    /// For each batch row, the reference row holding it, if the references contain the batch.
    pub self_rows: Option<&'a [u32]>,
}

/// Parses a RON configuration; an empty or blank text means the defaults.
pub fn parse_config<T: Plugin>(text: &str) -> Result<T::Config> {
    if text.trim().is_empty() {
        return Ok(T::Config::default());
    }
    ron::from_str(text).map_err(|e| Error::bad_config(format!("config of '{}': {e}", T::ID)))
}

/// The default configuration as pretty RON text.
pub fn default_config_text<T: Plugin>() -> String {
    let pretty = ron::ser::PrettyConfig::new();
    ron::ser::to_string_pretty(&T::Config::default(), pretty)
        .unwrap_or_else(|e| panic!("default config of '{}' cannot be written as RON: {e}", T::ID))
}

impl<T: Plugin> Instance<T> {
    /// Creates an instance from a typed configuration.
    pub fn new(config: T::Config, context: Context) -> Result<Self> {
        let plugin = T::new(config, &context)?;
        Ok(Instance { plugin, context })
    }

    /// Creates an instance from RON text (empty text: the defaults).
    pub fn from_config_text(text: &str, context: Context) -> Result<Self> {
        Self::new(parse_config::<T>(text)?, context)
    }

    /// The plugin itself.
    pub fn plugin(&self) -> &T {
        &self.plugin
    }

    /// The context it was created with.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Checks shapes, lengths, finiteness and label range, and returns the plugin's view.
    /// References are refused unless the plugin accepts them.
    fn check_batch<'a>(&self, raw: RawBatch<'a>, accepts_references: bool) -> Result<Batch<'a>> {
        let RawBatch { n, d, embeddings, labels, references } = raw;
        if n == 0 || d == 0 {
            return Err(Error::bad_input(format!("empty batch (n = {n}, d = {d})")));
        }
        if self.context.embedding_dim != 0 && d != self.context.embedding_dim {
            return Err(Error::bad_input(format!(
                "batch has embedding size {d}, the instance was created for {}",
                self.context.embedding_dim
            )));
        }
        let expected = n.checked_mul(d).ok_or_else(|| Error::bad_input(format!("n·d overflows (n = {n}, d = {d})")))?;
        if embeddings.len() != expected {
            return Err(Error::bad_input(format!(
                "{} embedding values for n = {n}, d = {d} (expected n·d = {expected})",
                embeddings.len()
            )));
        }
        if labels.len() != n {
            return Err(Error::bad_input(format!("{} labels for {n} embeddings", labels.len())));
        }
        if let Some(i) = first_non_finite(embeddings) {
            return Err(Error::bad_input(format!("embedding row {}, column {} is {}", i / d, i % d, embeddings[i])));
        }
        self.check_labels("", labels)?;
        let references = match references {
            None => None,
            Some(_) if !accepts_references => {
                return Err(Error::unsupported(format!(
                    "plugin '{}' does not accept reference embeddings (a cross-batch memory)",
                    T::ID
                )));
            }
            Some(r) => Some(self.check_references(r, d, labels)?),
        };
        Ok(Batch { embeddings: MatRef::new(n, d, embeddings), labels, tuples: None, references })
    }

    /// Labels in `0..num_classes` when the class count is known; `what` prefixes the row.
    fn check_labels(&self, what: &str, labels: &[i64]) -> Result<()> {
        let classes = self.context.num_classes;
        if classes > 0
            && let Some((i, &label)) = labels.iter().enumerate().find(|&(_, &l)| l < 0 || l as u64 >= classes as u64)
        {
            return Err(Error::bad_input(format!(
                "label {label} of {what}row {i} is outside 0..{classes} (the number of classes)"
            )));
        }
        Ok(())
    }

    /// Reference embeddings of the batch's d, finite, with labels in range, and self rows
    /// (one per batch row) that point at a reference row with that batch row's label.
    fn check_references<'a>(&self, raw: RawReferences<'a>, d: usize, labels: &[i64]) -> Result<References<'a>> {
        let RawReferences { embeddings, labels: reference_labels, self_rows } = raw;
        let m = reference_labels.len();
        if m == 0 {
            return Err(Error::bad_input("empty references (0 rows)"));
        }
        if m.checked_mul(d) != Some(embeddings.len()) {
            return Err(Error::bad_input(format!(
                "{} reference embedding values for {m} reference labels and d = {d} (expected m·d)",
                embeddings.len()
            )));
        }
        if let Some(i) = first_non_finite(embeddings) {
            return Err(Error::bad_input(format!(
                "reference embedding row {}, column {} is {}",
                i / d,
                i % d,
                embeddings[i]
            )));
        }
        self.check_labels("reference ", reference_labels)?;
        if let Some(rows) = self_rows {
            Rows { labels, reference_labels, self_rows: SelfRows::Given(rows) }
                .check_self_rows()
                .map_err(|e| Error::bad_input(e.0))?;
        }
        Ok(References { embeddings: MatRef::new(m, d, embeddings), labels: reference_labels, self_rows })
    }

    /// The plugin's state bytes.
    pub fn save(&self) -> Result<Vec<u8>> {
        self.plugin.save()
    }

    /// Restores state bytes.
    pub fn load(&mut self, bytes: &[u8]) -> Result<()> {
        self.plugin.load(bytes)
    }
}

impl<T: Loss> Instance<T> {
    /// Checked forward and backward pass, writing dL/dZ into `grad` (n·d values).
    pub fn forward_backward_into(
        &mut self,
        raw: RawBatch<'_>,
        tuples: Option<Tuples>,
        grad: &mut [f32],
        stats: &mut Stats,
    ) -> Result<f64> {
        let mut batch = self.check_batch(raw, T::ACCEPTS_REFERENCES)?;
        if grad.len() != raw.n * raw.d {
            return Err(Error::bad_input(format!(
                "gradient buffer holds {} values, expected n·d = {}",
                grad.len(),
                raw.n * raw.d
            )));
        }
        batch.tuples = match (T::TUPLES, tuples) {
            (TupleUse::Ignored, None) => None,
            (TupleUse::Ignored, Some(_)) => {
                return Err(Error::bad_input(format!(
                    "loss '{}' does not use mined tuples; run it without a miner",
                    T::ID
                )));
            }
            (TupleUse::Required(_), None) => {
                return Err(Error::bad_input(format!("loss '{}' needs mined tuples; add a miner", T::ID)));
            }
            (TupleUse::Optional(form) | TupleUse::Required(form), Some(t)) => {
                t.validate_in(batch.rows(), "input tuples")?;
                Some(t.into_form(form))
            }
            (TupleUse::Optional(_), None) => None,
        };
        grad.fill(0.0);
        let loss = self.plugin.forward_backward(&batch, grad, stats)?;
        if !loss.is_finite() {
            return Err(Error::failed(format!("loss '{}' returned a non-finite value {loss}", T::ID)));
        }
        if let Some(i) = first_non_finite(grad) {
            return Err(Error::failed(format!(
                "loss '{}' returned a non-finite gradient {} at row {}, column {}",
                T::ID,
                grad[i],
                i / raw.d,
                i % raw.d
            )));
        }
        if T::PIECEWISE_SMOOTH && stats.get(PIECE_STAT).is_none() {
            return Err(Error::failed(format!(
                "loss '{}' declares itself piecewise smooth but recorded no '{PIECE_STAT}' statistic",
                T::ID
            )));
        }
        Ok(loss)
    }

    /// Checked forward and backward pass on an n×d batch (n from the label count).
    pub fn forward_backward(
        &mut self,
        embeddings: &[f32],
        labels: &[i64],
        tuples: Option<&Tuples>,
    ) -> Result<LossValue> {
        self.forward_backward_against(embeddings, labels, None, tuples)
    }

    /// [`forward_backward`](Self::forward_backward) with reference embeddings beside the batch.
    pub fn forward_backward_against(
        &mut self,
        embeddings: &[f32],
        labels: &[i64],
        references: Option<RawReferences<'_>>,
        tuples: Option<&Tuples>,
    ) -> Result<LossValue> {
        let d = self.context.embedding_dim.max(1);
        let raw = RawBatch { n: labels.len(), d, embeddings, labels, references };
        let mut grad = vec![0.0; embeddings.len()];
        let mut stats = Stats::default();
        let loss = self.forward_backward_into(raw, tuples.cloned(), &mut grad, &mut stats)?;
        Ok(LossValue { loss, grad, stats })
    }

    /// Updates the loss's own parameters.
    pub fn step(&mut self, lr_scale: f64) -> Result<()> {
        if !lr_scale.is_finite() || lr_scale < 0.0 {
            return Err(Error::bad_input(format!(
                "learning-rate scale {lr_scale} is not a finite non-negative number"
            )));
        }
        self.plugin.step(lr_scale)
    }
}

impl<T: Miner> Instance<T> {
    /// Checked mining: input checks, then the output's form and every index.
    pub fn mine_raw(&mut self, raw: RawBatch<'_>, stats: &mut Stats) -> Result<Tuples> {
        let mut batch = self.check_batch(raw, T::ACCEPTS_REFERENCES)?;
        let rows = batch.rows();
        // A miner compares the batch with the references as PML's miners do with `ref_emb`,
        // a row's own copy included; the self comparisons are removed from its output.
        if let Some(references) = batch.references.as_mut() {
            references.self_rows = None;
        }
        let mut tuples = self.plugin.mine(&batch, stats)?;
        if tuples.form() != T::OUTPUT {
            return Err(Error::failed(format!(
                "miner '{}' declares {:?} but returned {:?}",
                T::ID,
                T::OUTPUT,
                tuples.form()
            )));
        }
        if matches!(rows.self_rows, SelfRows::Given(_)) {
            tuples = tuples.without_self_comparisons(rows);
        }
        tuples.validate_in(rows, &format!("tuples mined by '{}'", T::ID)).map_err(|e| Error::failed(e.0))?;
        Ok(tuples)
    }

    /// Checked mining on an n×d batch (n from the label count).
    pub fn mine(&mut self, embeddings: &[f32], labels: &[i64]) -> Result<(Tuples, Stats)> {
        self.mine_against(embeddings, labels, None)
    }

    /// [`mine`](Self::mine) against reference embeddings.
    pub fn mine_against(
        &mut self,
        embeddings: &[f32],
        labels: &[i64],
        references: Option<RawReferences<'_>>,
    ) -> Result<(Tuples, Stats)> {
        let d = self.context.embedding_dim.max(1);
        let raw = RawBatch { n: labels.len(), d, embeddings, labels, references };
        let mut stats = Stats::default();
        let tuples = self.mine_raw(raw, &mut stats)?;
        Ok((tuples, stats))
    }
}
