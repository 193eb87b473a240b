//! Safe handles on plugin instances: [`LossHandle`] and [`MinerHandle`].
//!
//! A handle owns one instance and destroys it when dropped. Its safe methods check what the
//! harness passes in (shapes, tuple indices) and what the plugin hands back (finite loss,
//! every gradient element written, valid tuples), so a plugin that is not built on the SDK
//! cannot corrupt a run silently. The `*_unchecked` methods pass input through unchanged;
//! the conformance suite uses them to see whether a plugin rejects bad input itself.

use std::ffi::c_void;
use std::fmt;

use dmlbench_abi::{
    Batch, CreateParams, LossOutput as RawLossOutput, MineOutput, PIECE_STAT, References as RawReferences, Sink,
    Status, VTable,
};
use dmlbench_tuples::{Rows, SelfRows, Tuples};

use dmlbench_abi::first_non_finite;

use super::callbacks::{ByteBuffer, StatBuffer, TupleBuffer, raw_tuples};
use super::library::{PluginInfo, PluginKind};

/// A failed plugin call: which plugin, which call, the status and the plugin's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    /// `loss:ID` or `miner:ID`.
    pub plugin: String,
    /// The ABI function called (`create`, `forward_backward`, ...).
    pub operation: &'static str,
    /// The status returned.
    pub status: Status,
    /// The plugin's message, or the host's when the host found the problem.
    pub message: String,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({}): {}", self.plugin, self.operation, self.status.name(), self.message)
    }
}

impl std::error::Error for PluginError {}

/// What `create` is given besides the plugin.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CreateOptions {
    /// RON configuration text; empty for the defaults.
    pub config: String,
    /// Embedding size.
    pub embedding_dim: usize,
    /// Number of training classes (0 when unknown).
    pub num_classes: usize,
    /// Seed.
    pub seed: u64,
    /// The experiment's base learning rate.
    pub base_lr: f64,
}

/// Reference embeddings passed beside a batch (ABI 1.2): a cross-batch memory, or a file of
/// reference embeddings. Anchors are batch rows; positives and negatives reference rows.
#[derive(Clone, Copy, Debug)]
pub struct References<'a> {
    /// m×d embeddings, row-major, with the batch's d.
    pub embeddings: &'a [f32],
    /// m labels.
    pub labels: &'a [i64],
    /// For each batch row, the reference row holding its own embedding (a memory holds the
    /// current batch), or `None` when the references do not contain the batch.
    pub self_rows: Option<&'a [u32]>,
}

impl<'a> References<'a> {
    /// The rows tuples index against these references, for a batch with `labels`.
    pub fn rows(&self, labels: &'a [i64]) -> Rows<'a> {
        Rows {
            labels,
            reference_labels: self.labels,
            self_rows: self.self_rows.map_or(SelfRows::None, SelfRows::Given),
        }
    }

    fn raw(&self) -> RawReferences {
        RawReferences {
            struct_size: size_of::<RawReferences>(),
            n: self.labels.len(),
            embeddings: self.embeddings.as_ptr(),
            embeddings_len: self.embeddings.len(),
            labels: self.labels.as_ptr(),
            labels_len: self.labels.len(),
            self_rows: self.self_rows.map_or(std::ptr::null(), |r| r.as_ptr()),
            self_rows_len: self.self_rows.map_or(0, |r| r.len()),
        }
    }
}

/// A loss's result for one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct LossOutput {
    /// The loss.
    pub loss: f64,
    /// dL/dZ, n×d row-major.
    pub grad: Vec<f32>,
    /// Statistics the plugin recorded.
    pub stats: Vec<(String, f64)>,
    /// For a piecewise smooth loss, the smooth piece its input lies on (the bits of its
    /// [`PIECE_STAT`] statistic, which is not among `stats`: it means nothing averaged).
    pub piece: Option<u64>,
}

/// A miner's result for one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct MinerOutput {
    /// The tuples.
    pub tuples: Tuples,
    /// Statistics the plugin recorded.
    pub stats: Vec<(String, f64)>,
}

/// One live instance; destroyed on drop.
struct Instance {
    info: PluginInfo,
    ptr: *mut c_void,
}

// SAFETY: the ABI lets an instance be used from any thread, one thread at a time, which
// `&mut self` on every call guarantees.
unsafe impl Send for Instance {}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(destroy) = self.info.vtable.destroy {
            // SAFETY: ptr came from this plugin's create and is destroyed exactly once.
            unsafe { destroy(self.ptr) };
        }
    }
}

impl Instance {
    fn create(info: &PluginInfo, options: &CreateOptions) -> Result<Self, PluginError> {
        let params = CreateParams {
            struct_size: size_of::<CreateParams>(),
            config: options.config.as_ptr(),
            config_len: options.config.len(),
            embedding_dim: u32::try_from(options.embedding_dim).unwrap_or(u32::MAX),
            num_classes: u32::try_from(options.num_classes).unwrap_or(u32::MAX),
            seed: options.seed,
            base_lr: options.base_lr,
        };
        let create = info.descriptor.create.expect("checked at load time");
        let mut ptr: *mut c_void = std::ptr::null_mut();
        let mut message = ByteBuffer::default();
        let sink = message.sink();
        // SAFETY: every pointer is valid for the call; the plugin copies what it keeps.
        let status = unsafe { create(&params, &mut ptr, &sink) };
        let error = |status: Status, text: String| PluginError {
            plugin: info.qualified_id(),
            operation: "create",
            status,
            message: text,
        };
        if status != Status::OK {
            return Err(error(status, message.text()));
        }
        if ptr.is_null() {
            return Err(error(Status::FAILED, "create returned OK but no instance".into()));
        }
        Ok(Instance { info: info.clone(), ptr })
    }

    fn vtable(&self) -> &'static VTable {
        self.info.vtable
    }

    fn error(&self, operation: &'static str, status: Status, message: impl Into<String>) -> PluginError {
        PluginError { plugin: self.info.qualified_id(), operation, status, message: message.into() }
    }

    /// Refuses references for a plugin that does not declare it accepts them.
    fn check_accepts(&self, has_references: bool, operation: &'static str) -> Result<(), PluginError> {
        if has_references && !self.info.capabilities.accepts_references {
            return Err(self.error(
                operation,
                Status::UNSUPPORTED,
                "does not accept reference embeddings (a cross-batch memory); it must declare \
                 ACCEPTS_REFERENCES (plugin ABI 1.2)",
            ));
        }
        Ok(())
    }

    /// Calls `f` with an error sink, turning a non-OK status into a [`PluginError`].
    fn call(
        &mut self,
        operation: &'static str,
        f: impl FnOnce(*mut c_void, &Sink) -> Status,
    ) -> Result<(), PluginError> {
        let mut message = ByteBuffer::default();
        let sink = message.sink();
        let status = f(self.ptr, &sink);
        if status == Status::OK {
            Ok(())
        } else {
            let text = message.text();
            Err(self.error(operation, status, if text.is_empty() { "no message".to_string() } else { text }))
        }
    }

    fn save_state(&mut self) -> Result<Vec<u8>, PluginError> {
        let Some(save) = self.vtable().save_state else {
            return Err(self.error("save_state", Status::UNSUPPORTED, "the plugin has no state"));
        };
        let mut bytes = ByteBuffer::default();
        let out = bytes.sink();
        // SAFETY: valid instance and sinks for the call.
        self.call("save_state", |ptr, err| unsafe { save(ptr, &out, err) })?;
        Ok(bytes.0)
    }

    fn load_state(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        let Some(load) = self.vtable().load_state else {
            return Err(self.error("load_state", Status::UNSUPPORTED, "the plugin has no state"));
        };
        // SAFETY: valid instance; bytes borrowed for the call.
        self.call("load_state", |ptr, err| unsafe { load(ptr, bytes.as_ptr(), bytes.len(), err) })
    }
}

fn batch(
    n: usize,
    d: usize,
    embeddings: &[f32],
    labels: &[i64],
    tuples: Option<&Tuples>,
    references: Option<&RawReferences>,
) -> Batch {
    Batch {
        struct_size: size_of::<Batch>(),
        n,
        d,
        embeddings: embeddings.as_ptr(),
        embeddings_len: embeddings.len(),
        labels: labels.as_ptr(),
        labels_len: labels.len(),
        tuples: raw_tuples(tuples),
        references: references.map_or(std::ptr::null(), |r| r as *const RawReferences),
    }
}

/// Checks what the harness passes: n·d embeddings for n labels, finite, references that fit
/// the batch, valid tuples.
fn check_input(
    embeddings: &[f32],
    d: usize,
    labels: &[i64],
    references: Option<&References>,
    tuples: Option<&Tuples>,
) -> Result<(), String> {
    if d == 0 || embeddings.len() != labels.len() * d {
        return Err(format!("{} embedding values for {} labels of size {d}", embeddings.len(), labels.len()));
    }
    if let Some(i) = first_non_finite(embeddings) {
        return Err(format!("embedding row {}, column {} is {}", i / d, i % d, embeddings[i]));
    }
    let rows = match references {
        None => Rows::batch(labels),
        Some(r) => {
            check_references(r, d, labels)?;
            r.rows(labels)
        }
    };
    if let Some(t) = tuples {
        t.validate_in(rows, "input tuples").map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn check_references(r: &References, d: usize, labels: &[i64]) -> Result<(), String> {
    let m = r.labels.len();
    if m == 0 || r.embeddings.len() != m * d {
        return Err(format!("{} reference embedding values for {m} reference labels of size {d}", r.embeddings.len()));
    }
    if let Some(i) = first_non_finite(r.embeddings) {
        return Err(format!("reference row {}, column {} is {}", i / d, i % d, r.embeddings[i]));
    }
    if let Some(rows) = r.self_rows {
        Rows { labels, reference_labels: r.labels, self_rows: SelfRows::Given(rows) }
            .check_self_rows()
            .map_err(|e| e.0)?;
    }
    Ok(())
}

/// A loss plugin instance.
pub struct LossHandle {
    instance: Instance,
    /// A gradient buffer given back with [`LossHandle::recycle`], for the next call.
    spare_grad: Vec<f32>,
}

impl LossHandle {
    /// Creates an instance of the loss `info` describes.
    pub fn create(info: &PluginInfo, options: &CreateOptions) -> Result<Self, PluginError> {
        assert_eq!(info.kind, PluginKind::Loss, "LossHandle::create on a {}", info.kind);
        Ok(LossHandle { instance: Instance::create(info, options)?, spare_grad: Vec::new() })
    }

    /// The plugin.
    pub fn info(&self) -> &PluginInfo {
        &self.instance.info
    }

    /// Loss and dL/dZ of a batch of `labels.len()` embeddings of size `d`, checked on both
    /// sides of the call.
    pub fn forward_backward(
        &mut self,
        embeddings: &[f32],
        d: usize,
        labels: &[i64],
        tuples: Option<&Tuples>,
    ) -> Result<LossOutput, PluginError> {
        self.forward_backward_against(embeddings, d, labels, None, tuples)
    }

    /// [`forward_backward`](Self::forward_backward) comparing the batch with `references`;
    /// refused for a loss without the `ACCEPTS_REFERENCES` capability.
    pub fn forward_backward_against(
        &mut self,
        embeddings: &[f32],
        d: usize,
        labels: &[i64],
        references: Option<&References>,
        tuples: Option<&Tuples>,
    ) -> Result<LossOutput, PluginError> {
        self.instance.check_accepts(references.is_some(), "forward_backward")?;
        check_input(embeddings, d, labels, references, tuples).map_err(|m| {
            self.instance.error("forward_backward", Status::BAD_INPUT, format!("host refused the batch: {m}"))
        })?;
        let out = self.call_forward_backward(labels.len(), d, embeddings, labels, references, tuples)?;
        if !out.loss.is_finite() {
            return Err(self.instance.error(
                "forward_backward",
                Status::FAILED,
                format!("returned a non-finite loss {}", out.loss),
            ));
        }
        // The gradient buffer starts as NaN, so this also catches elements never written.
        if let Some(i) = first_non_finite(&out.grad) {
            return Err(self.instance.error(
                "forward_backward",
                Status::FAILED,
                format!("gradient row {}, column {} is {} (non-finite or never written)", i / d, i % d, out.grad[i]),
            ));
        }
        Ok(out)
    }

    /// The call with the batch passed as given (n, d and buffers may disagree), for
    /// conformance checks. The output is not checked.
    pub fn forward_backward_unchecked(
        &mut self,
        n: usize,
        d: usize,
        embeddings: &[f32],
        labels: &[i64],
        tuples: Option<&Tuples>,
    ) -> Result<LossOutput, PluginError> {
        self.call_forward_backward(n, d, embeddings, labels, None, tuples)
    }

    fn call_forward_backward(
        &mut self,
        n: usize,
        d: usize,
        embeddings: &[f32],
        labels: &[i64],
        references: Option<&References>,
        tuples: Option<&Tuples>,
    ) -> Result<LossOutput, PluginError> {
        let forward_backward = self.instance.vtable().forward_backward.expect("checked at load time");
        let raw_references = references.map(References::raw);
        let raw_batch = batch(n, d, embeddings, labels, tuples, raw_references.as_ref());
        let mut grad = std::mem::take(&mut self.spare_grad);
        grad.clear();
        grad.resize(embeddings.len(), f32::NAN);
        let mut stats = StatBuffer::default();
        let mut output = RawLossOutput {
            struct_size: size_of::<RawLossOutput>(),
            loss: f64::NAN,
            grad: grad.as_mut_ptr(),
            grad_len: grad.len(),
            stats: stats.sink(),
        };
        // SAFETY: the batch borrows live buffers; grad holds grad_len values.
        self.instance
            .call("forward_backward", |ptr, err| unsafe { forward_backward(ptr, &raw_batch, &mut output, err) })?;
        let mut stats = stats.0;
        let mut piece = None;
        if self.instance.info.capabilities.piecewise_smooth {
            stats.retain(|(name, value)| {
                let is_piece = name == PIECE_STAT;
                if is_piece {
                    piece = Some(value.to_bits());
                }
                !is_piece
            });
        }
        Ok(LossOutput { loss: output.loss, grad, stats, piece })
    }

    /// Gives back the gradient of an earlier output once it has been used, so that the next
    /// call writes into it instead of allocating a new buffer (the training loop does this
    /// every batch).
    pub fn recycle(&mut self, grad: Vec<f32>) {
        self.spare_grad = grad;
    }

    /// Updates the loss's own parameters with the schedule factor `lr_scale`.
    pub fn step(&mut self, lr_scale: f64) -> Result<(), PluginError> {
        let Some(step) = self.instance.vtable().step else {
            return Ok(()); // a loss without parameters has nothing to update
        };
        // SAFETY: valid instance for the call.
        self.instance.call("step", |ptr, err| unsafe { step(ptr, lr_scale, err) })
    }

    /// The plugin's state bytes.
    pub fn save_state(&mut self) -> Result<Vec<u8>, PluginError> {
        self.instance.save_state()
    }

    /// Restores state bytes.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        self.instance.load_state(bytes)
    }
}

/// A miner plugin instance.
pub struct MinerHandle {
    instance: Instance,
}

impl MinerHandle {
    /// Creates an instance of the miner `info` describes.
    pub fn create(info: &PluginInfo, options: &CreateOptions) -> Result<Self, PluginError> {
        assert_eq!(info.kind, PluginKind::Miner, "MinerHandle::create on a {}", info.kind);
        Ok(MinerHandle { instance: Instance::create(info, options)? })
    }

    /// The plugin.
    pub fn info(&self) -> &PluginInfo {
        &self.instance.info
    }

    /// Tuples of a batch of `labels.len()` embeddings of size `d`, checked on both sides.
    pub fn mine(&mut self, embeddings: &[f32], d: usize, labels: &[i64]) -> Result<MinerOutput, PluginError> {
        self.mine_against(embeddings, d, labels, None)
    }

    /// [`mine`](Self::mine) against `references`: anchors from the batch, positives and
    /// negatives from the references. Pairs of a row with its own copy in the references are
    /// removed from the output (PML's `remove_self_comparisons`), so a miner need not avoid
    /// them. Refused for a miner without the `ACCEPTS_REFERENCES` capability.
    pub fn mine_against(
        &mut self,
        embeddings: &[f32],
        d: usize,
        labels: &[i64],
        references: Option<&References>,
    ) -> Result<MinerOutput, PluginError> {
        self.instance.check_accepts(references.is_some(), "mine")?;
        check_input(embeddings, d, labels, references, None)
            .map_err(|m| self.instance.error("mine", Status::BAD_INPUT, format!("host refused the batch: {m}")))?;
        let mut out = self.call_mine(labels.len(), d, embeddings, labels, references)?;
        let caps = self.instance.info.capabilities;
        let declared_ok = match out.tuples {
            Tuples::Pairs(_) => caps.produces_pairs,
            Tuples::Triplets(_) => caps.produces_triplets,
        };
        if !declared_ok {
            return Err(self.instance.error("mine", Status::FAILED, "returned a tuple form it does not declare"));
        }
        let rows = references.map_or(Rows::batch(labels), |r| r.rows(labels));
        if references.is_some() {
            out.tuples = out.tuples.without_self_comparisons(rows);
        }
        out.tuples.validate_in(rows, "mined tuples").map_err(|e| self.instance.error("mine", Status::FAILED, e.0))?;
        Ok(out)
    }

    /// The call with the batch passed as given, for conformance checks; the tuples are
    /// copied but not checked.
    pub fn mine_unchecked(
        &mut self,
        n: usize,
        d: usize,
        embeddings: &[f32],
        labels: &[i64],
    ) -> Result<MinerOutput, PluginError> {
        self.call_mine(n, d, embeddings, labels, None)
    }

    fn call_mine(
        &mut self,
        n: usize,
        d: usize,
        embeddings: &[f32],
        labels: &[i64],
        references: Option<&References>,
    ) -> Result<MinerOutput, PluginError> {
        let mine = self.instance.vtable().mine.expect("checked at load time");
        let raw_references = references.map(References::raw);
        let raw_batch = batch(n, d, embeddings, labels, None, raw_references.as_ref());
        let mut tuples = TupleBuffer::default();
        let mut stats = StatBuffer::default();
        let output = MineOutput { struct_size: size_of::<MineOutput>(), tuples: tuples.sink(), stats: stats.sink() };
        // SAFETY: the batch borrows live buffers; the sinks outlive the call.
        self.instance.call("mine", |ptr, err| unsafe { mine(ptr, &raw_batch, &output, err) })?;
        let mut received = std::mem::take(&mut tuples.received);
        if received.len() != 1 {
            return Err(self.instance.error(
                "mine",
                Status::FAILED,
                format!("emitted tuples {} times; the ABI asks for exactly once", received.len()),
            ));
        }
        let tuples = received.pop().expect("one").map_err(|m| self.instance.error("mine", Status::FAILED, m))?;
        Ok(MinerOutput { tuples, stats: stats.0 })
    }

    /// The plugin's state bytes.
    pub fn save_state(&mut self) -> Result<Vec<u8>, PluginError> {
        self.instance.save_state()
    }

    /// Restores state bytes.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        self.instance.load_state(bytes)
    }
}
