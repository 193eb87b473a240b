//! Safe handles on plugin instances: [`LossHandle`] and [`MinerHandle`].
//!
//! A handle owns one instance and destroys it when dropped. Its safe methods check what the
//! harness passes in (shapes, tuple indices) and what the plugin hands back (finite loss,
//! every gradient element written, valid tuples), so a plugin that is not built on the SDK
//! cannot corrupt a run silently. The `*_unchecked` methods pass input through unchanged;
//! the conformance suite uses them to see whether a plugin rejects bad input itself.

use std::ffi::c_void;
use std::fmt;

use dmlbench_abi::{Batch, CreateParams, LossOutput as RawLossOutput, MineOutput, Sink, Status, VTable};
use dmlbench_tuples::Tuples;

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

/// A loss's result for one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct LossOutput {
    /// The loss.
    pub loss: f64,
    /// dL/dZ, n×d row-major.
    pub grad: Vec<f32>,
    /// Statistics the plugin recorded.
    pub stats: Vec<(String, f64)>,
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

fn batch(n: usize, d: usize, embeddings: &[f32], labels: &[i64], tuples: Option<&Tuples>) -> Batch {
    Batch {
        struct_size: size_of::<Batch>(),
        n,
        d,
        embeddings: embeddings.as_ptr(),
        embeddings_len: embeddings.len(),
        labels: labels.as_ptr(),
        labels_len: labels.len(),
        tuples: raw_tuples(tuples),
    }
}

/// Checks what the harness passes: n·d embeddings for n labels, finite, valid tuples.
fn check_input(embeddings: &[f32], d: usize, labels: &[i64], tuples: Option<&Tuples>) -> Result<(), String> {
    if d == 0 || embeddings.len() != labels.len() * d {
        return Err(format!("{} embedding values for {} labels of size {d}", embeddings.len(), labels.len()));
    }
    if let Some(i) = first_non_finite(embeddings) {
        return Err(format!("embedding row {}, column {} is {}", i / d, i % d, embeddings[i]));
    }
    if let Some(t) = tuples {
        t.validate(labels, "input tuples").map_err(|e| e.to_string())?;
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
        check_input(embeddings, d, labels, tuples).map_err(|m| {
            self.instance.error("forward_backward", Status::BAD_INPUT, format!("host refused the batch: {m}"))
        })?;
        let out = self.forward_backward_unchecked(labels.len(), d, embeddings, labels, tuples)?;
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
        let forward_backward = self.instance.vtable().forward_backward.expect("checked at load time");
        let raw_batch = batch(n, d, embeddings, labels, tuples);
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
        Ok(LossOutput { loss: output.loss, grad, stats: stats.0 })
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
        check_input(embeddings, d, labels, None)
            .map_err(|m| self.instance.error("mine", Status::BAD_INPUT, format!("host refused the batch: {m}")))?;
        let out = self.mine_unchecked(labels.len(), d, embeddings, labels)?;
        let caps = self.instance.info.capabilities;
        let declared_ok = match out.tuples {
            Tuples::Pairs(_) => caps.produces_pairs,
            Tuples::Triplets(_) => caps.produces_triplets,
        };
        if !declared_ok {
            return Err(self.instance.error("mine", Status::FAILED, "returned a tuple form it does not declare"));
        }
        out.tuples.validate(labels, "mined tuples").map_err(|e| self.instance.error("mine", Status::FAILED, e.0))?;
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
        let mine = self.instance.vtable().mine.expect("checked at load time");
        let raw_batch = batch(n, d, embeddings, labels, None);
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
