//! The C ABI, version 1, between the dmlbench host and its plugins.
//!
//! A plugin is a shared library (a Rust `cdylib`, or anything else with a C ABI) that exports
//! one function, [`ENTRY_SYMBOL`] (`dmlbench_plugin_entry_v1`), returning a pointer to an
//! [`Entry`]. The entry says which ABI version the library speaks and lists the plugins it
//! contains through their [`Descriptor`]s. A descriptor names a loss or a miner, carries its
//! default configuration and points at `create` plus a [`VTable`] of instance functions.
//! The same layout is declared for C in `include/dmlbench.h`.
//!
//! This crate holds the types, the checks both sides run on what crosses the boundary
//! ([`first_non_finite`] for numbers, [`escape_terminal`] for text) and no dependencies, so
//! that it never pulls anything into a plugin. Plugin authors normally use `dmlbench-sdk`,
//! which fills these structs for them and checks every input.
//!
//! # What crosses the boundary
//!
//! Only `#[repr(C)]` structs, integers, floats, raw pointers and nullable function pointers
//! (`Option<unsafe extern "C" fn>`). Never `Box`, `Vec`, `String`, slices or trait objects:
//! two sides may be built by different compilers or in different languages.
//!
//! # Ownership
//!
//! - **Inputs are borrowed** for the duration of one call: embeddings, labels, tuples, the
//!   configuration text and state bytes. A plugin must not keep a pointer to them after it
//!   returns.
//! - **Outputs go into host memory**: the gradient into a buffer the host allocated
//!   ([`LossOutput::grad`]); tuples, statistics, state bytes and error messages through host
//!   callbacks ([`TupleSink`], [`StatSink`], [`Sink`]) that copy what they are given before
//!   they return.
//! - **Whoever allocates frees.** An instance created by `create` is freed only by the same
//!   plugin's [`VTable::destroy`]; the host never frees plugin memory and a plugin never frees
//!   host memory.
//! - **Descriptors are static**: the entry, descriptors, vtables and every string they point
//!   to live as long as the library is loaded. The host never unloads a plugin library.
//!
//! # Errors
//!
//! Every function that can fail returns a [`Status`]. On anything but [`Status::OK`] it should
//! write one UTF-8 message through the error [`Sink`] it was given (the message may be
//! written in several pieces; the host concatenates them). A panic or exception must never
//! unwind across the boundary: the SDK catches panics and returns [`Status::PANICKED`].
//!
//! # Versioning
//!
//! The major version is part of the symbol name, so a host never even finds a library of
//! another major version by mistake. Within a major version, every struct starts with its
//! size in bytes (`struct_size`) and only ever grows at the end: a newer minor version adds
//! fields after the last one. A reader checks that `struct_size` covers every field it reads
//! and treats fields beyond the writer's size as absent. The host requires
//! [`Entry::abi_major`] == [`ABI_MAJOR`] and `abi_minor` ≥ the minor version it needs.
//!
//! # Extensions
//!
//! A capability that a later minor version adds is either a new field or an extension:
//!
//! - a **new field at the end of a struct** (a [`VTable`] slot, a [`Batch`] field) for what
//!   belongs to the core of every plugin of a kind: the host calls or fills it on every step,
//!   and a plugin built against an older minor version simply lacks it (its `struct_size` says
//!   so);
//! - an **extension**, found with [`Descriptor::get_extension`] (since 1.1), for an optional
//!   capability that only some plugins have, that comes with several functions or data of its
//!   own, or that is versioned apart from the core ABI: its id carries its own version (`.v1`,
//!   `.v2`), a plugin may implement several versions at once, and the host asks for the newest
//!   one it knows. Its struct starts with its `struct_size` and grows at the end like every
//!   struct here. Ids starting `dmlbench.` are reserved for extensions this crate documents;
//!   others use a reverse domain name of their own.
//!
//! # Thread safety
//!
//! The host calls one instance from one thread at a time. Different instances may be used
//! from different threads at once; a library with global mutable state must guard it.

#![no_std]
#![deny(missing_docs)]

extern crate alloc;

mod checks;
mod text;
pub use checks::first_non_finite;
pub use text::escape_terminal;

use core::ffi::{c_char, c_void};

/// The major ABI version this crate describes. Part of [`ENTRY_SYMBOL`].
pub const ABI_MAJOR: u32 = 1;

/// The minor ABI version this crate describes: fields added at the end of structs.
///
/// - 1.0: the first version.
/// - 1.1: [`Descriptor::get_extension`].
/// - 1.2: [`Batch::references`], reference embeddings beside the batch (cross-batch memory),
///   and [`capability::ACCEPTS_REFERENCES`]; [`capability::PIECEWISE_SMOOTH`] and its
///   [`PIECE_STAT`] statistic.
pub const ABI_MINOR: u32 = 2;

/// Name of the one symbol a plugin library exports, of type [`EntryFn`].
pub const ENTRY_SYMBOL: &str = "dmlbench_plugin_entry_v1";

/// Type of the exported entry function. It takes no argument, must be callable any number of
/// times from any thread, and returns a pointer to a static [`Entry`] (never null).
pub type EntryFn = unsafe extern "C" fn() -> *const Entry;

/// Result of every fallible ABI function.
///
/// An `i32` rather than a Rust enum, so that an unknown value coming from a newer or buggy
/// plugin is still a valid value to receive. Readers treat unknown non-zero codes as
/// [`Status::FAILED`].
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(pub i32);

impl Status {
    /// Success.
    pub const OK: Status = Status(0);
    /// The configuration text could not be parsed or holds an invalid value.
    pub const BAD_CONFIG: Status = Status(1);
    /// The batch, tuples or state bytes are invalid (null pointer, wrong length, NaN,
    /// out-of-range index, ...).
    pub const BAD_INPUT: Status = Status(2);
    /// The computation failed for another reason (for example a non-finite result).
    pub const FAILED: Status = Status(3);
    /// The plugin panicked or threw; the panic was caught at the boundary. The instance should
    /// not be used again except to destroy it.
    pub const PANICKED: Status = Status(4);
    /// The function is not supported by this plugin (for example `save_state` on a plugin
    /// without state).
    pub const UNSUPPORTED: Status = Status(5);

    /// A short human word for the status, used as a message prefix (`bad config`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Status::OK => "ok",
            Status::BAD_CONFIG => "bad config",
            Status::BAD_INPUT => "bad input",
            Status::FAILED => "failed",
            Status::PANICKED => "panicked",
            Status::UNSUPPORTED => "unsupported",
            _ => "unknown status",
        }
    }
}

/// What a plugin is.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kind(pub u32);

impl Kind {
    /// A loss: returns a scalar and its gradient with respect to the embeddings.
    pub const LOSS: Kind = Kind(1);
    /// A miner: returns tuples (triplets or pairs) of batch indices.
    pub const MINER: Kind = Kind(2);
}

/// Capability flags of a plugin ([`Descriptor::capabilities`]), combined with `|`.
pub mod capability {
    /// Loss: uses mined pairs (a1, p, a2, n) when given.
    pub const ACCEPTS_PAIRS: u64 = 1 << 0;
    /// Loss: uses mined triplets (a, p, n) when given.
    pub const ACCEPTS_TRIPLETS: u64 = 1 << 1;
    /// Loss: cannot run without mined tuples.
    pub const NEEDS_TUPLES: u64 = 1 << 2;
    /// Loss: owns trainable parameters (proxies, classifier, centres) and updates them in
    /// [`VTable::step`](crate::VTable::step).
    pub const OWNS_PARAMETERS: u64 = 1 << 3;
    /// The plugin has state to checkpoint through `save_state` / `load_state`.
    pub const SUPPORTS_STATE: u64 = 1 << 4;
    /// Miner: outputs pairs.
    pub const PRODUCES_PAIRS: u64 = 1 << 5;
    /// Miner: outputs triplets.
    pub const PRODUCES_TRIPLETS: u64 = 1 << 6;
    /// Loss or miner: takes [`Batch::references`](crate::Batch::references) (since 1.2). The
    /// host never sends references to a plugin without this flag.
    pub const ACCEPTS_REFERENCES: u64 = 1 << 7;
    /// Loss: piecewise smooth, with kinks it can name (a binned loss, whose slope jumps where
    /// a distance crosses a bin edge). Every call records the statistic [`PIECE_STAT`], a
    /// value equal for two inputs on the same smooth piece and different across a kink, so
    /// that finite differences need never straddle one. A host that does not know the flag
    /// ignores it and sees an ordinary statistic.
    ///
    /// [`PIECE_STAT`]: crate::PIECE_STAT
    pub const PIECEWISE_SMOOTH: u64 = 1 << 8;
    /// Every flag this version defines; readers ignore other bits.
    pub const ALL: u64 = (1 << 9) - 1;
}

/// The statistic in which a [`capability::PIECEWISE_SMOOTH`] loss names the smooth piece its
/// input lies on; only equality of values means anything.
pub const PIECE_STAT: &str = "piece";

/// A host callback that receives bytes: UTF-8 error messages, or a plugin's state.
///
/// The host copies the bytes before `write` returns. A plugin may call `write` several times;
/// the pieces are concatenated in order.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Sink {
    /// Host context, passed back unchanged.
    pub ctx: *mut c_void,
    /// Append `len` bytes starting at `bytes`. Null means the host discards the bytes.
    pub write: Option<unsafe extern "C" fn(ctx: *mut c_void, bytes: *const u8, len: usize)>,
}

/// A host callback that records named statistics of one call ("active_pairs", "zero_loss"...).
///
/// The host copies the name before `record` returns. Recording the same name twice keeps the
/// last value.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StatSink {
    /// Host context, passed back unchanged.
    pub ctx: *mut c_void,
    /// Record `value` under the UTF-8 name `name[..name_len]`. Null means no statistics wanted.
    pub record: Option<unsafe extern "C" fn(ctx: *mut c_void, name: *const u8, name_len: usize, value: f64)>,
}

/// What the exported entry function points at: the library's ABI version and its plugins.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// `size_of::<Entry>()` as the plugin was built.
    pub struct_size: usize,
    /// Must equal [`ABI_MAJOR`].
    pub abi_major: u32,
    /// The minor version the plugin was built against.
    pub abi_minor: u32,
    /// NUL-terminated UTF-8: the version of the SDK (or hand-written layer) that built it.
    pub sdk_version: *const c_char,
    /// Number of plugins in this library.
    pub plugin_count: Option<unsafe extern "C" fn() -> u32>,
    /// Descriptor of plugin `index` (0 ≤ index < count); null for an index out of range.
    pub plugin_descriptor: Option<unsafe extern "C" fn(index: u32) -> *const Descriptor>,
}

/// Static description of one plugin.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Descriptor {
    /// `size_of::<Descriptor>()` as the plugin was built.
    pub struct_size: usize,
    /// Loss or miner.
    pub kind: Kind,
    /// [`capability`] flags.
    pub capabilities: u64,
    /// NUL-terminated UTF-8 identifier, unique within its kind: lowercase ASCII letters,
    /// digits and `_`, starting with a letter (`contrastive`, `batch_hard`).
    pub id: *const c_char,
    /// NUL-terminated UTF-8 human-readable name ("Contrastive loss").
    pub name: *const c_char,
    /// NUL-terminated UTF-8 version of the plugin (semantic versioning).
    pub version: *const c_char,
    /// NUL-terminated UTF-8 one-line summary, with its source.
    pub summary: *const c_char,
    /// NUL-terminated UTF-8 default configuration as RON text; `create` accepts it unchanged.
    pub default_config: *const c_char,
    /// Creates an instance. On success writes a non-null instance pointer to `instance_out`
    /// and returns [`Status::OK`]; the host later frees it with [`VTable::destroy`].
    pub create: Option<
        unsafe extern "C" fn(params: *const CreateParams, instance_out: *mut *mut c_void, error: *const Sink) -> Status,
    >,
    /// Instance functions.
    pub vtable: *const VTable,
    /// Since 1.1. Looks up an extension of this plugin by its NUL-terminated id
    /// (`"vendor.name.vN"`, for example `"dmlbench.example.v1"`): a pointer to a static struct
    /// whose layout the extension's documentation defines, starting with its `struct_size`,
    /// or null when the plugin does not implement it. Null itself when the plugin implements
    /// no extension. Callable from any thread; what it returns lives as long as the library.
    /// See [the crate docs](crate#extensions) for when a capability is an extension rather
    /// than a new field.
    pub get_extension: Option<unsafe extern "C" fn(id: *const c_char) -> *const c_void>,
}

/// The size of a [`Descriptor`] written by an ABI 1.0 plugin, before `get_extension`: the
/// smallest descriptor a host of this major version accepts.
pub const DESCRIPTOR_SIZE_1_0: usize = core::mem::offset_of!(Descriptor, get_extension);

/// Everything `create` needs. Borrowed for the call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CreateParams {
    /// `size_of::<CreateParams>()` as the host was built.
    pub struct_size: usize,
    /// UTF-8 RON configuration text (not NUL-terminated); an empty text means the defaults.
    pub config: *const u8,
    /// Length of `config` in bytes.
    pub config_len: usize,
    /// Embedding size d of every batch this instance will see.
    pub embedding_dim: u32,
    /// Number of training classes; labels lie in `0..num_classes` (0 when unknown).
    pub num_classes: u32,
    /// Seed for every random choice the instance makes; the same seed gives the same results.
    pub seed: u64,
    /// The experiment's base learning rate, for plugins that default their own to it.
    pub base_lr: f64,
}

/// Instance functions of a plugin. Entries a plugin's kind does not use are null.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VTable {
    /// `size_of::<VTable>()` as the plugin was built.
    pub struct_size: usize,
    /// Frees an instance. Required. Called exactly once per instance; never fails.
    pub destroy: Option<unsafe extern "C" fn(instance: *mut c_void)>,
    /// Loss only, required: computes the loss of `batch`, writes it to `output.loss` and
    /// dL/dZ into `output.grad` (n×d, row-major, every element written).
    pub forward_backward: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            batch: *const Batch,
            output: *mut LossOutput,
            error: *const Sink,
        ) -> Status,
    >,
    /// Loss only, optional: updates the plugin's own parameters from the gradients of the
    /// last `forward_backward`, with its configured learning rate times `lr_scale` (the
    /// schedule's factor in [0, 1] or more during warm-up experiments).
    pub step: Option<unsafe extern "C" fn(instance: *mut c_void, lr_scale: f64, error: *const Sink) -> Status>,
    /// Miner only, required: mines tuples from `batch` and reports them through
    /// `output.tuples` exactly once.
    pub mine: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            batch: *const Batch,
            output: *const MineOutput,
            error: *const Sink,
        ) -> Status,
    >,
    /// Optional: writes the instance's state (safetensors layout) through `out`.
    pub save_state: Option<unsafe extern "C" fn(instance: *mut c_void, out: *const Sink, error: *const Sink) -> Status>,
    /// Optional: restores state written by `save_state` of the same plugin and configuration.
    pub load_state:
        Option<unsafe extern "C" fn(instance: *mut c_void, bytes: *const u8, len: usize, error: *const Sink) -> Status>,
}

/// Kind of a [`Tuples`] value.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TupleKind(pub u32);

impl TupleKind {
    /// No tuples: a loss uses every pair or triplet of the batch.
    pub const NONE: TupleKind = TupleKind(0);
    /// Triplets (a, p, n): `a1`, `p`, `n` hold `pos_len` indices each; `neg_len` == `pos_len`.
    pub const TRIPLETS: TupleKind = TupleKind(1);
    /// Pairs in pytorch-metric-learning's convention (a1, p, a2, n): positive pairs
    /// (`a1[i]`, `p[i]`) for i < `pos_len`, negative pairs (`a2[j]`, `n[j]`) for j < `neg_len`.
    pub const PAIRS: TupleKind = TupleKind(2);
}

/// Borrowed tuples of batch row indices.
///
/// For triplets `a2` is null. A positive shares the anchor's label, a negative does not.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Tuples {
    /// Triplets, pairs or none.
    pub kind: TupleKind,
    /// Anchors (triplets) or anchors of positive pairs (pairs).
    pub a1: *const u32,
    /// Positives.
    pub p: *const u32,
    /// Number of triplets, or of positive pairs.
    pub pos_len: usize,
    /// Anchors of negative pairs (pairs only; null for triplets).
    pub a2: *const u32,
    /// Negatives.
    pub n: *const u32,
    /// Number of negative pairs (pairs), or the number of triplets again.
    pub neg_len: usize,
}

impl Tuples {
    /// The "no tuples" value.
    pub const NONE: Tuples = Tuples {
        kind: TupleKind::NONE,
        a1: core::ptr::null(),
        p: core::ptr::null(),
        pos_len: 0,
        a2: core::ptr::null(),
        n: core::ptr::null(),
        neg_len: 0,
    };
}

/// One batch of embeddings, borrowed for the duration of a call.
///
/// The lengths are given separately from `n` and `d` so that a plugin can reject a batch whose
/// buffers do not match its shape instead of reading out of bounds.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Batch {
    /// `size_of::<Batch>()` as the host was built.
    pub struct_size: usize,
    /// Number of embeddings (rows).
    pub n: usize,
    /// Embedding size (columns).
    pub d: usize,
    /// n×d `f32`, row-major.
    pub embeddings: *const f32,
    /// Number of `f32` at `embeddings`; must equal n·d.
    pub embeddings_len: usize,
    /// Class label of each row.
    pub labels: *const i64,
    /// Number of labels; must equal n.
    pub labels_len: usize,
    /// Mined tuples, or [`Tuples::NONE`].
    pub tuples: Tuples,
    /// Reference embeddings to compare the batch with (since 1.2), or null: the batch is
    /// compared with itself.
    ///
    /// With references, every pair or triplet has its anchor in the batch and its positive
    /// and negative among the references: tuple indices `a1`, `a2`, `a` are batch rows, `p`
    /// and `n` reference rows. The loss's gradient is for the batch only (the references are
    /// constants). Only sent to plugins with [`capability::ACCEPTS_REFERENCES`].
    pub references: *const References,
}

/// Reference embeddings and their labels, borrowed for one call (since 1.2): in training, a
/// memory of past batches' embeddings (cross-batch memory, Wang et al., CVPR 2020).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct References {
    /// `size_of::<References>()` as the host was built.
    pub struct_size: usize,
    /// Number of reference embeddings (rows).
    pub n: usize,
    /// n×d `f32`, row-major, with the batch's d.
    pub embeddings: *const f32,
    /// Number of `f32` at `embeddings`; must equal n·d.
    pub embeddings_len: usize,
    /// Class label of each reference row.
    pub labels: *const i64,
    /// Number of labels; must equal n.
    pub labels_len: usize,
    /// For each batch row, the reference row holding the same embedding (a memory holds the
    /// current batch too), which is never that row's positive; or null when no reference row
    /// is a batch row.
    pub self_rows: *const u32,
    /// Number of entries at `self_rows`: the batch's n, or 0 when `self_rows` is null.
    pub self_rows_len: usize,
}

/// Where a loss writes its results. Host memory.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LossOutput {
    /// `size_of::<LossOutput>()` as the host was built.
    pub struct_size: usize,
    /// The scalar loss (written by the plugin).
    pub loss: f64,
    /// n×d buffer for dL/dZ, row-major; the plugin writes every element.
    pub grad: *mut f32,
    /// Number of `f32` at `grad`; equals n·d.
    pub grad_len: usize,
    /// Optional statistics of this call.
    pub stats: StatSink,
}

/// Host callback receiving a miner's tuples; the host copies them before `emit` returns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TupleSink {
    /// Host context, passed back unchanged.
    pub ctx: *mut c_void,
    /// Receives the mined tuples.
    pub emit: Option<unsafe extern "C" fn(ctx: *mut c_void, tuples: *const Tuples)>,
}

/// Where a miner writes its results.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MineOutput {
    /// `size_of::<MineOutput>()` as the host was built.
    pub struct_size: usize,
    /// Receives the tuples; called exactly once per successful `mine`.
    pub tuples: TupleSink,
    /// Optional statistics of this call.
    pub stats: StatSink,
}

// SAFETY: by the contract above, an Entry, Descriptor and VTable only point at immutable data
// and functions that live as long as the library; sharing them between threads is sound.
unsafe impl Sync for Entry {}
unsafe impl Send for Entry {}
unsafe impl Sync for Descriptor {}
unsafe impl Send for Descriptor {}
unsafe impl Sync for VTable {}
unsafe impl Send for VTable {}
