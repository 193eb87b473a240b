//! The C side of a plugin: descriptors, vtables and the `extern "C"` functions that turn ABI
//! calls into checked [`Instance`] calls. Plugins use it through [`export_plugins!`](crate::export_plugins).
//!
//! Every exported function runs its body inside `catch_unwind`: a panic becomes
//! [`Status::PANICKED`] with the panic message, and the instance that panicked is marked
//! poisoned, so later calls on it fail cleanly instead of running on half-updated state.

use std::ffi::{CString, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use dmlbench_abi::{
    ABI_MAJOR, ABI_MINOR, CreateParams, Descriptor, Entry, Kind, LossOutput, MineOutput, Sink, Status, TupleKind,
    Tuples as RawTuples, VTable, capability,
};

use crate::error::{Error, Result};
use crate::instance::{Instance, RawBatch, RawReferences, default_config_text};
use crate::plugin::{Context, Loss, Miner, Plugin, Stats, TupleUse};
use crate::tuples::{Pairs, Triplets, TupleForm, Tuples};

/// The version of this SDK, reported in the entry.
pub const SDK_VERSION: &str = concat!("dmlbench-sdk ", env!("CARGO_PKG_VERSION"));

/// One plugin's descriptor together with the memory it points into.
pub struct Registered {
    descriptor: Descriptor,
    // The descriptor points into these; they live as long as the registry (forever).
    _strings: Vec<CString>,
    _vtable: Box<VTable>,
}

// SAFETY: the raw pointers in `descriptor` point into `_strings` and `_vtable`, which are
// owned by the same value and never mutated.
unsafe impl Send for Registered {}
unsafe impl Sync for Registered {}

/// Every plugin of a library and its entry. Built once by [`export_plugins!`](crate::export_plugins).
pub struct Registry {
    entry: Entry,
    plugins: Vec<Registered>,
    _sdk_version: CString,
}

// SAFETY: as for `Registered`; the entry points at `_sdk_version` and static functions.
unsafe impl Send for Registry {}
unsafe impl Sync for Registry {}

impl Registry {
    /// Builds the registry; `count` and `describe` are the library's exported trampolines.
    pub fn new(
        plugins: Vec<Registered>,
        count: unsafe extern "C" fn() -> u32,
        describe: unsafe extern "C" fn(u32) -> *const Descriptor,
    ) -> Self {
        let sdk_version = CString::new(SDK_VERSION).expect("no NUL in the SDK version");
        let entry = Entry {
            struct_size: size_of::<Entry>(),
            abi_major: ABI_MAJOR,
            abi_minor: ABI_MINOR,
            sdk_version: sdk_version.as_ptr(),
            plugin_count: Some(count),
            plugin_descriptor: Some(describe),
        };
        Registry { entry, plugins, _sdk_version: sdk_version }
    }

    /// The entry.
    pub fn entry(&self) -> *const Entry {
        &self.entry
    }

    /// Number of plugins.
    pub fn count(&self) -> u32 {
        self.plugins.len() as u32
    }

    /// Descriptor `index`, or null.
    pub fn descriptor(&self, index: u32) -> *const Descriptor {
        self.plugins.get(index as usize).map_or(std::ptr::null(), |p| &p.descriptor as *const Descriptor)
    }
}

/// Runs `registry()` without letting a panic escape; null when building it panicked.
pub fn guarded_entry(registry: fn() -> &'static Registry) -> *const Entry {
    install_panic_hook();
    catch_unwind(|| registry().entry()).unwrap_or(std::ptr::null())
}

thread_local! {
    /// Where and why the last panic on this thread happened, for the error message.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces the default panic hook of the plugin library (a `cdylib` has its own copy of
/// std, so this does not touch the host's): instead of printing to stderr, which would
/// interleave backtraces with the host's output, it keeps the message and location for the
/// error the host receives.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let text = format!("{}{location}", panic_message(info.payload()));
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(text));
        }));
    });
}

/// Plugin count without letting a panic escape.
pub fn guarded_count(registry: fn() -> &'static Registry) -> u32 {
    catch_unwind(|| registry().count()).unwrap_or(0)
}

/// Descriptor lookup without letting a panic escape.
pub fn guarded_descriptor(registry: fn() -> &'static Registry, index: u32) -> *const Descriptor {
    catch_unwind(|| registry().descriptor(index)).unwrap_or(std::ptr::null())
}

fn c_string(what: &str, text: &str) -> CString {
    CString::new(text).unwrap_or_else(|_| panic!("{what} contains a NUL byte: {text:?}"))
}

fn register<T: Plugin>(kind: Kind, capabilities: u64, vtable: VTable) -> Registered {
    let strings = vec![
        c_string("plugin id", T::ID),
        c_string("plugin name", T::NAME),
        c_string("plugin version", T::VERSION),
        c_string("plugin summary", T::SUMMARY),
        c_string("default config", &default_config_text::<T>()),
    ];
    let state = if T::HAS_STATE { capability::SUPPORTS_STATE } else { 0 };
    let vtable = Box::new(vtable);
    let descriptor = Descriptor {
        struct_size: size_of::<Descriptor>(),
        kind,
        capabilities: capabilities | state,
        id: strings[0].as_ptr(),
        name: strings[1].as_ptr(),
        version: strings[2].as_ptr(),
        summary: strings[3].as_ptr(),
        default_config: strings[4].as_ptr(),
        create: Some(create::<T>),
        vtable: &*vtable,
        // The SDK defines no extension yet; each comes with the capability that needs it.
        get_extension: None,
    };
    Registered { descriptor, _strings: strings, _vtable: vtable }
}

fn base_vtable<T: Plugin>() -> VTable {
    VTable {
        struct_size: size_of::<VTable>(),
        destroy: Some(destroy::<T>),
        forward_backward: None,
        step: None,
        mine: None,
        save_state: T::HAS_STATE.then_some(save_state::<T> as _),
        load_state: T::HAS_STATE.then_some(load_state::<T> as _),
    }
}

/// The registration of loss `T`.
pub fn loss<T: Loss>() -> Registered {
    let tuples = match T::TUPLES {
        TupleUse::Ignored => 0,
        TupleUse::Optional(_) => capability::ACCEPTS_PAIRS | capability::ACCEPTS_TRIPLETS,
        TupleUse::Required(_) => capability::ACCEPTS_PAIRS | capability::ACCEPTS_TRIPLETS | capability::NEEDS_TUPLES,
    };
    let params = if T::OWNS_PARAMETERS { capability::OWNS_PARAMETERS } else { 0 };
    let pieces = if T::PIECEWISE_SMOOTH { capability::PIECEWISE_SMOOTH } else { 0 };
    let vtable = VTable { forward_backward: Some(forward_backward::<T>), step: Some(step::<T>), ..base_vtable::<T>() };
    register::<T>(Kind::LOSS, tuples | params | references(T::ACCEPTS_REFERENCES) | pieces, vtable)
}

/// The registration of miner `T`.
pub fn miner<T: Miner>() -> Registered {
    let output = match T::OUTPUT {
        TupleForm::Pairs => capability::PRODUCES_PAIRS,
        TupleForm::Triplets => capability::PRODUCES_TRIPLETS,
    };
    let vtable = VTable { mine: Some(mine::<T>), ..base_vtable::<T>() };
    register::<T>(Kind::MINER, output | references(T::ACCEPTS_REFERENCES), vtable)
}

fn references(accepted: bool) -> u64 {
    if accepted { capability::ACCEPTS_REFERENCES } else { 0 }
}

/// Writes `message` through the host's error sink, if there is one.
///
/// # Safety
/// `sink` is null or points at a valid [`Sink`].
unsafe fn report(sink: *const Sink, message: &str) {
    if let Some(sink) = unsafe { sink.as_ref() }
        && let Some(write) = sink.write
    {
        unsafe { write(sink.ctx, message.as_ptr(), message.len()) };
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

/// Runs `body`, turning its error or panic into a status and a message for the host.
///
/// # Safety
/// `error` is null or points at a valid [`Sink`].
unsafe fn guard(error: *const Sink, body: impl FnOnce() -> Result<()>) -> Status {
    let outcome = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => {
            let text = LAST_PANIC.with(|last| last.borrow_mut().take()).unwrap_or_else(|| panic_message(&*payload));
            Err(Error::panicked(format!("the plugin panicked: {text}")))
        }
    };
    match outcome {
        Ok(()) => Status::OK,
        Err(e) => {
            unsafe { report(error, e.message()) };
            e.status()
        }
    }
}

/// An instance as the host holds it: the checked instance and whether it panicked.
struct Handle<T> {
    instance: Instance<T>,
    poisoned: bool,
}

/// Runs `body` on the instance behind `ptr`, refusing a null or poisoned one and poisoning
/// it if `body` panics.
///
/// # Safety
/// `ptr` is null or was returned by `create::<T>` and not destroyed; `error` is null or valid.
unsafe fn with_handle<T: Plugin>(
    ptr: *mut c_void,
    error: *const Sink,
    body: impl FnOnce(&mut Instance<T>) -> Result<()>,
) -> Status {
    let Some(handle) = (unsafe { (ptr as *mut Handle<T>).as_mut() }) else {
        unsafe { report(error, "null instance") };
        return Status::BAD_INPUT;
    };
    if handle.poisoned {
        unsafe { report(error, "this instance panicked earlier and cannot be used again") };
        return Status::FAILED;
    }
    let status = unsafe { guard(error, || body(&mut handle.instance)) };
    if status == Status::PANICKED {
        handle.poisoned = true;
    }
    status
}

/// A borrowed slice from an ABI pointer and length; an empty slice for length 0.
///
/// # Safety
/// When `len > 0` and `ptr` is not null, `ptr` points at `len` valid values for `'a`.
unsafe fn slice<'a, V>(what: &str, ptr: *const V, len: usize) -> Result<&'a [V]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::bad_input(format!("{what} is null but its length is {len}")));
    }
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

fn check_size(what: &str, found: usize, needed: usize) -> Result<()> {
    if found < needed {
        return Err(Error::bad_input(format!(
            "{what} is {found} bytes, this plugin needs at least {needed} (host built against an older ABI?)"
        )));
    }
    Ok(())
}

/// Reads an ABI batch into a [`RawBatch`] and owned tuples, checking pointers and sizes.
///
/// # Safety
/// `batch` is null or points at a valid [`dmlbench_abi::Batch`] whose buffers hold at least
/// the lengths it states.
unsafe fn read_batch<'a>(batch: *const dmlbench_abi::Batch) -> Result<(RawBatch<'a>, Option<Tuples>)> {
    let batch = unsafe { batch.as_ref() }.ok_or_else(|| Error::bad_input("null batch"))?;
    // A 1.0 or 1.1 host's batch ends before `references`: it has none.
    let with_references = std::mem::offset_of!(dmlbench_abi::Batch, references) + size_of::<usize>();
    check_size("the batch struct", batch.struct_size, std::mem::offset_of!(dmlbench_abi::Batch, references))?;
    let embeddings = unsafe { slice("embeddings", batch.embeddings, batch.embeddings_len)? };
    let labels = unsafe { slice("labels", batch.labels, batch.labels_len)? };
    let tuples = unsafe { read_tuples(&batch.tuples)? };
    let references = match batch.struct_size >= with_references {
        true => unsafe { read_references(batch.references)? },
        false => None,
    };
    Ok((RawBatch { n: batch.n, d: batch.d, embeddings, labels, references }, tuples))
}

/// Borrows ABI references, if any, checking their pointers and size.
///
/// # Safety
/// `references` is null or points at a valid [`dmlbench_abi::References`] whose buffers hold
/// at least the lengths it states.
unsafe fn read_references<'a>(references: *const dmlbench_abi::References) -> Result<Option<RawReferences<'a>>> {
    let Some(r) = (unsafe { references.as_ref() }) else { return Ok(None) };
    check_size("the references struct", r.struct_size, size_of::<dmlbench_abi::References>())?;
    if r.labels_len != r.n {
        return Err(Error::bad_input(format!("{} reference labels for {} references", r.labels_len, r.n)));
    }
    let embeddings = unsafe { slice("reference embeddings", r.embeddings, r.embeddings_len)? };
    let labels = unsafe { slice("reference labels", r.labels, r.labels_len)? };
    let self_rows = match r.self_rows.is_null() {
        true => None,
        false => Some(unsafe { slice("self rows", r.self_rows, r.self_rows_len)? }),
    };
    Ok(Some(RawReferences { embeddings, labels, self_rows }))
}

/// Copies ABI tuples into owned ones.
///
/// # Safety
/// The pointers of `t` hold at least the lengths it states.
unsafe fn read_tuples(t: &RawTuples) -> Result<Option<Tuples>> {
    let copy = |what: &str, ptr: *const u32, len: usize| -> Result<Vec<u32>> {
        Ok(unsafe { slice(what, ptr, len)? }.to_vec())
    };
    match t.kind {
        TupleKind::NONE => Ok(None),
        TupleKind::TRIPLETS => {
            if t.neg_len != t.pos_len {
                return Err(Error::bad_input(format!("triplets have pos_len {} but neg_len {}", t.pos_len, t.neg_len)));
            }
            Ok(Some(Tuples::Triplets(Triplets {
                a: copy("triplet anchors", t.a1, t.pos_len)?,
                p: copy("triplet positives", t.p, t.pos_len)?,
                n: copy("triplet negatives", t.n, t.pos_len)?,
            })))
        }
        TupleKind::PAIRS => Ok(Some(Tuples::Pairs(Pairs {
            a1: copy("positive-pair anchors", t.a1, t.pos_len)?,
            p: copy("positives", t.p, t.pos_len)?,
            a2: copy("negative-pair anchors", t.a2, t.neg_len)?,
            n: copy("negatives", t.n, t.neg_len)?,
        }))),
        other => Err(Error::bad_input(format!("unknown tuple kind {}", other.0))),
    }
}

/// Sends every statistic to the host.
///
/// # Safety
/// `sink`'s callback, if any, is valid.
unsafe fn send_stats(sink: &dmlbench_abi::StatSink, stats: &Stats) {
    if let Some(record) = sink.record {
        for (name, value) in stats.iter() {
            unsafe { record(sink.ctx, name.as_ptr(), name.len(), value) };
        }
    }
}

unsafe extern "C" fn create<T: Plugin>(
    params: *const CreateParams,
    instance_out: *mut *mut c_void,
    error: *const Sink,
) -> Status {
    unsafe {
        guard(error, || {
            let params = params.as_ref().ok_or_else(|| Error::bad_input("null create parameters"))?;
            check_size("the create-parameters struct", params.struct_size, size_of::<CreateParams>())?;
            if instance_out.is_null() {
                return Err(Error::bad_input("null instance_out"));
            }
            let text = slice("config", params.config, params.config_len)?;
            let text = std::str::from_utf8(text)
                .map_err(|e| Error::bad_config(format!("config of '{}' is not UTF-8: {e}", T::ID)))?;
            let context = Context {
                embedding_dim: params.embedding_dim as usize,
                num_classes: params.num_classes as usize,
                seed: params.seed,
                base_lr: params.base_lr,
            };
            let instance = Instance::<T>::from_config_text(text, context)?;
            let handle = Box::new(Handle { instance, poisoned: false });
            *instance_out = Box::into_raw(handle) as *mut c_void;
            Ok(())
        })
    }
}

unsafe extern "C" fn destroy<T: Plugin>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // A panic in a plugin's Drop must not unwind into the host; the memory is then leaked.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(instance as *mut Handle<T>) })));
}

unsafe extern "C" fn forward_backward<T: Loss>(
    instance: *mut c_void,
    batch: *const dmlbench_abi::Batch,
    output: *mut LossOutput,
    error: *const Sink,
) -> Status {
    unsafe {
        with_handle::<T>(instance, error, |inst| {
            let (raw, tuples) = read_batch(batch)?;
            let output = output.as_mut().ok_or_else(|| Error::bad_input("null loss output"))?;
            check_size("the loss-output struct", output.struct_size, size_of::<LossOutput>())?;
            if output.grad.is_null() {
                return Err(Error::bad_input("null gradient buffer"));
            }
            let grad = std::slice::from_raw_parts_mut(output.grad, output.grad_len);
            let mut stats = Stats::default();
            output.loss = inst.forward_backward_into(raw, tuples, grad, &mut stats)?;
            send_stats(&output.stats, &stats);
            Ok(())
        })
    }
}

unsafe extern "C" fn step<T: Loss>(instance: *mut c_void, lr_scale: f64, error: *const Sink) -> Status {
    unsafe { with_handle::<T>(instance, error, |inst| inst.step(lr_scale)) }
}

unsafe extern "C" fn mine<T: Miner>(
    instance: *mut c_void,
    batch: *const dmlbench_abi::Batch,
    output: *const MineOutput,
    error: *const Sink,
) -> Status {
    unsafe {
        with_handle::<T>(instance, error, |inst| {
            let (raw, tuples) = read_batch(batch)?;
            if tuples.is_some() {
                return Err(Error::bad_input("a miner takes no input tuples"));
            }
            let output = output.as_ref().ok_or_else(|| Error::bad_input("null mine output"))?;
            check_size("the mine-output struct", output.struct_size, size_of::<MineOutput>())?;
            let emit = output.tuples.emit.ok_or_else(|| Error::bad_input("null tuple sink"))?;
            let mut stats = Stats::default();
            let mined = inst.mine_raw(raw, &mut stats)?;
            let raw_tuples = match &mined {
                Tuples::Triplets(t) => RawTuples {
                    kind: TupleKind::TRIPLETS,
                    a1: t.a.as_ptr(),
                    p: t.p.as_ptr(),
                    pos_len: t.len(),
                    a2: std::ptr::null(),
                    n: t.n.as_ptr(),
                    neg_len: t.len(),
                },
                Tuples::Pairs(p) => RawTuples {
                    kind: TupleKind::PAIRS,
                    a1: p.a1.as_ptr(),
                    p: p.p.as_ptr(),
                    pos_len: p.positives(),
                    a2: p.a2.as_ptr(),
                    n: p.n.as_ptr(),
                    neg_len: p.negatives(),
                },
            };
            emit(output.tuples.ctx, &raw_tuples);
            send_stats(&output.stats, &stats);
            Ok(())
        })
    }
}

unsafe extern "C" fn save_state<T: Plugin>(instance: *mut c_void, out: *const Sink, error: *const Sink) -> Status {
    unsafe {
        with_handle::<T>(instance, error, |inst| {
            let out = out.as_ref().ok_or_else(|| Error::bad_input("null state sink"))?;
            let write = out.write.ok_or_else(|| Error::bad_input("null state sink"))?;
            let bytes = inst.save()?;
            write(out.ctx, bytes.as_ptr(), bytes.len());
            Ok(())
        })
    }
}

unsafe extern "C" fn load_state<T: Plugin>(
    instance: *mut c_void,
    bytes: *const u8,
    len: usize,
    error: *const Sink,
) -> Status {
    unsafe {
        with_handle::<T>(instance, error, |inst| {
            let bytes = slice("state bytes", bytes, len)?;
            inst.load(bytes)
        })
    }
}

/// Exports plugins from a `cdylib` crate: defines the `dmlbench_plugin_entry_v1` symbol
/// listing every type given, each marked `loss:` or `miner:`.
///
/// ```text
/// dmlbench_sdk::export_plugins!(loss: ContrastiveLoss, miner: BatchHardMiner);
/// ```
#[macro_export]
macro_rules! export_plugins {
    ($($kind:ident : $plugin:ty),+ $(,)?) => {
        const _: () = {
            static REGISTRY: ::std::sync::OnceLock<$crate::export::Registry> = ::std::sync::OnceLock::new();

            fn registry() -> &'static $crate::export::Registry {
                REGISTRY.get_or_init(|| {
                    $crate::export::Registry::new(
                        ::std::vec![$($crate::export::$kind::<$plugin>()),+],
                        count,
                        describe,
                    )
                })
            }

            unsafe extern "C" fn count() -> u32 {
                $crate::export::guarded_count(registry)
            }

            unsafe extern "C" fn describe(index: u32) -> *const $crate::abi::Descriptor {
                $crate::export::guarded_descriptor(registry, index)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn dmlbench_plugin_entry_v1() -> *const $crate::abi::Entry {
                $crate::export::guarded_entry(registry)
            }
        };
    };
}
