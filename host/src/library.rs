//! Loading one plugin library and checking everything it declares.

use std::ffi::{CStr, c_char, c_void};
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use dmlbench_abi::{
    ABI_MAJOR, DESCRIPTOR_SIZE_1_0, Descriptor, ENTRY_SYMBOL, Entry, EntryFn, Kind, VTable, capability,
};
use serde::{Deserialize, Serialize};

/// The ABI minor version this host needs: it reads no field added after 1.0.
const REQUIRED_MINOR: u32 = 0;

/// Loss or miner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// A loss.
    Loss,
    /// A miner.
    Miner,
}

impl PluginKind {
    /// `loss` or `miner`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Loss => "loss",
            PluginKind::Miner => "miner",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a plugin came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    /// The shared library.
    pub library: PathBuf,
    /// The crate it was built from, for plugins found under `plugins/`.
    pub crate_dir: Option<PathBuf>,
}

/// The capability flags of a plugin, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Loss: uses mined pairs.
    pub accepts_pairs: bool,
    /// Loss: uses mined triplets.
    pub accepts_triplets: bool,
    /// Loss: cannot run without mined tuples.
    pub needs_tuples: bool,
    /// Loss: owns trainable parameters.
    pub owns_parameters: bool,
    /// Has state to checkpoint.
    pub supports_state: bool,
    /// Miner: outputs pairs.
    pub produces_pairs: bool,
    /// Miner: outputs triplets.
    pub produces_triplets: bool,
    /// Loss or miner: takes reference embeddings beside the batch (ABI 1.2).
    pub accepts_references: bool,
    /// Loss: piecewise smooth, naming its piece in every call.
    pub piecewise_smooth: bool,
}

impl Capabilities {
    fn from_bits(bits: u64) -> Self {
        let has = |flag: u64| bits & flag != 0;
        Capabilities {
            accepts_pairs: has(capability::ACCEPTS_PAIRS),
            accepts_triplets: has(capability::ACCEPTS_TRIPLETS),
            needs_tuples: has(capability::NEEDS_TUPLES),
            owns_parameters: has(capability::OWNS_PARAMETERS),
            supports_state: has(capability::SUPPORTS_STATE),
            produces_pairs: has(capability::PRODUCES_PAIRS),
            produces_triplets: has(capability::PRODUCES_TRIPLETS),
            accepts_references: has(capability::ACCEPTS_REFERENCES),
            piecewise_smooth: has(capability::PIECEWISE_SMOOTH),
        }
    }

    /// Whether a loss uses mined tuples at all.
    pub fn accepts_tuples(&self) -> bool {
        self.accepts_pairs || self.accepts_triplets
    }

    /// Short names of the set flags, for listings.
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.accepts_pairs, "accepts pairs"),
            (self.accepts_triplets, "accepts triplets"),
            (self.needs_tuples, "needs tuples"),
            (self.owns_parameters, "owns parameters"),
            (self.supports_state, "state"),
            (self.produces_pairs, "produces pairs"),
            (self.produces_triplets, "produces triplets"),
            (self.accepts_references, "accepts references"),
            (self.piecewise_smooth, "piecewise smooth"),
        ];
        all.iter().filter(|(set, _)| *set).map(|(_, name)| *name).collect()
    }
}

/// A loaded, checked plugin.
#[derive(Clone, Debug, Serialize)]
pub struct PluginInfo {
    /// Loss or miner.
    pub kind: PluginKind,
    /// Identifier, unique within the kind.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// One-line summary with its source.
    pub summary: String,
    /// Default configuration, RON.
    pub default_config: String,
    /// Capability flags.
    pub capabilities: Capabilities,
    /// Version string of the SDK that built it.
    pub sdk_version: String,
    /// ABI version (major, minor) the library declares.
    pub abi_version: (u32, u32),
    /// Where it came from.
    pub source: Source,
    /// The descriptor as the plugin wrote it, copied; fields of a newer minor version than
    /// the plugin's are zero (absent).
    #[serde(skip)]
    pub(crate) descriptor: Descriptor,
    #[serde(skip)]
    pub(crate) vtable: &'static VTable,
}

impl PluginInfo {
    /// `loss:ID` or `miner:ID`.
    pub fn qualified_id(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }

    /// The plugin's extension `id` ([`Descriptor::get_extension`], ABI 1.1): the pointer the
    /// plugin returned, or `None` when it does not implement it (or was built against 1.0).
    /// The struct behind the pointer is the extension's to define; read its `struct_size`
    /// before any other field.
    pub fn extension(&self, id: &CStr) -> Option<NonNull<c_void>> {
        let get = self.descriptor.get_extension?;
        // SAFETY: by the ABI, `get_extension` takes a NUL-terminated id, may be called from any
        // thread and returns a pointer that lives as long as the library, or null.
        NonNull::new(unsafe { get(id.as_ptr()) }.cast_mut())
    }
}

/// Copies a struct of the ABI that grows at the end from the plugin's memory: only the
/// `struct_size` bytes the plugin wrote are read, and the fields of newer minor versions stay
/// zero. `None` when it is smaller than `min_size`, the size of its first version.
///
/// # Safety
/// `ptr` points at a readable struct of at least its declared `struct_size` bytes (capped at
/// `size_of::<T>()`), whose first field is that `usize`; `T` is valid when all zero (numbers,
/// raw pointers and nullable function pointers).
unsafe fn copy_grown<T: Copy>(ptr: *const T, min_size: usize) -> Option<T> {
    let declared = unsafe { ptr.cast::<usize>().read_unaligned() };
    if declared < min_size {
        return None;
    }
    let mut copy = std::mem::MaybeUninit::<T>::zeroed();
    let len = declared.min(size_of::<T>());
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), copy.as_mut_ptr().cast::<u8>(), len);
        Some(copy.assume_init())
    }
}

/// Why a library is not a usable plugin library. A library with some invalid plugins is
/// rejected as a whole: its author should fix it rather than ship half of it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The dynamic loader refused it; the source holds the loader's reason (a missing
    /// dependency, a wrong architecture, not a shared library).
    #[error("cannot load")]
    Open(#[source] libloading::Error),
    /// It exports no entry function of this ABI major version.
    #[error(
        "not a dmlbench plugin (no `{ENTRY_SYMBOL}` symbol; a library for another ABI major version would export `dmlbench_plugin_entry_v2` or later)"
    )]
    NoEntry,
    /// The entry function returned null.
    #[error("the entry function returned null (the plugin failed to initialise)")]
    NullEntry,
    /// It speaks another major version of the ABI.
    #[error("ABI major version {0} (this host speaks {ABI_MAJOR})")]
    AbiMajor(u32),
    /// It speaks an older minor version than the host needs.
    #[error("ABI version 1.{0} is older than the 1.{REQUIRED_MINOR} this host needs")]
    AbiMinor(u32),
    /// The entry itself is malformed (too small, a null or non-UTF-8 field, no plugins).
    #[error("{0}")]
    Entry(String),
    /// One of its plugin descriptors is malformed.
    #[error("plugin {index}: {problem}")]
    Descriptor {
        /// The descriptor's index in the library.
        index: u32,
        /// What is wrong, naming the plugin's id when it could be read.
        problem: String,
    },
}

/// Reads a NUL-terminated UTF-8 string from a plugin.
///
/// # Safety
/// `ptr` is null or points at a NUL-terminated string that lives as long as the library.
unsafe fn static_str(ptr: *const c_char, field: &str) -> Result<String, String> {
    if ptr.is_null() {
        return Err(format!("{field} is null"));
    }
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str().map(str::to_string).map_err(|e| format!("{field} is not UTF-8: {e}"))
}

/// Whether `id` is lowercase ASCII letters, digits and `_`, starting with a letter.
pub(crate) fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Loads the library at `path` (never unloading it) and returns its plugins, or why it is not
/// usable.
pub fn load(path: &Path, crate_dir: Option<&Path>) -> Result<Vec<PluginInfo>, LoadError> {
    // SAFETY: loading a library runs its initialisers; that is the trust a plugin is given.
    let library = unsafe { libloading::Library::new(path) }.map_err(LoadError::Open)?;
    // The library is never unloaded: descriptors, vtables and instances point into it.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's type is fixed by the ABI's name for it.
    let entry_fn: EntryFn =
        unsafe { *library.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()).map_err(|_| LoadError::NoEntry)? };
    // SAFETY: the entry function takes no arguments and returns a static pointer.
    let entry: &'static Entry = unsafe { entry_fn().as_ref() }.ok_or(LoadError::NullEntry)?;
    if entry.struct_size < size_of::<Entry>() {
        let (found, needed) = (entry.struct_size, size_of::<Entry>());
        return Err(LoadError::Entry(format!("entry struct is {found} bytes, ABI 1.0 needs {needed}")));
    }
    if entry.abi_major != ABI_MAJOR {
        return Err(LoadError::AbiMajor(entry.abi_major));
    }
    // Always false while the host needs minor 0; kept for the first minor version it requires.
    #[allow(clippy::absurd_extreme_comparisons)]
    if entry.abi_minor < REQUIRED_MINOR {
        return Err(LoadError::AbiMinor(entry.abi_minor));
    }
    let sdk_version = unsafe { static_str(entry.sdk_version, "entry.sdk_version") }.map_err(LoadError::Entry)?;
    let (Some(count), Some(describe)) = (entry.plugin_count, entry.plugin_descriptor) else {
        return Err(LoadError::Entry("entry lacks plugin_count or plugin_descriptor".into()));
    };
    let count = unsafe { count() };
    if count == 0 {
        return Err(LoadError::Entry("the library declares no plugins".into()));
    }
    let mut plugins = Vec::with_capacity(count as usize);
    for index in 0..count {
        let descriptor = unsafe { describe(index) };
        if descriptor.is_null() {
            return Err(LoadError::Entry(format!("descriptor {index} is null")));
        }
        let info =
            unsafe { read_descriptor(descriptor) }.map_err(|problem| LoadError::Descriptor { index, problem })?;
        plugins.push(PluginInfo {
            sdk_version: sdk_version.clone(),
            abi_version: (entry.abi_major, entry.abi_minor),
            source: Source { library: path.to_path_buf(), crate_dir: crate_dir.map(Path::to_path_buf) },
            ..info
        });
    }
    Ok(plugins)
}

/// Checks one descriptor and copies it and its strings.
///
/// # Safety
/// `descriptor` is non-null, lives as long as the (leaked) library and follows the ABI.
unsafe fn read_descriptor(descriptor: *const Descriptor) -> Result<PluginInfo, String> {
    let Some(d) = (unsafe { copy_grown(descriptor, DESCRIPTOR_SIZE_1_0) }) else {
        let declared = unsafe { descriptor.cast::<usize>().read_unaligned() };
        return Err(format!("descriptor is {declared} bytes, ABI 1.0 needs {DESCRIPTOR_SIZE_1_0}"));
    };
    let id = unsafe { static_str(d.id, "id") }?;
    let named = |e: String| format!("'{id}': {e}");
    if !valid_id(&id) {
        return Err(named("the id must be lowercase letters, digits and '_', starting with a letter".into()));
    }
    let kind = match d.kind {
        Kind::LOSS => PluginKind::Loss,
        Kind::MINER => PluginKind::Miner,
        other => return Err(named(format!("unknown kind {}", other.0))),
    };
    let name = unsafe { static_str(d.name, "name") }.map_err(named)?;
    let version = unsafe { static_str(d.version, "version") }.map_err(named)?;
    let summary = unsafe { static_str(d.summary, "summary") }.map_err(named)?;
    let default_config = unsafe { static_str(d.default_config, "default_config") }.map_err(named)?;
    if !default_config.trim().is_empty() {
        ron::from_str::<ron::Value>(&default_config)
            .map_err(|e| named(format!("default config is not valid RON: {e}")))?;
    }
    if d.create.is_none() {
        return Err(named("create is null".into()));
    }
    let vtable = unsafe { d.vtable.as_ref() }.ok_or_else(|| named("vtable is null".into()))?;
    if vtable.struct_size < size_of::<VTable>() {
        return Err(named(format!("vtable is {} bytes, ABI 1.0 needs {}", vtable.struct_size, size_of::<VTable>())));
    }
    if vtable.destroy.is_none() {
        return Err(named("vtable.destroy is null".into()));
    }
    let capabilities = Capabilities::from_bits(d.capabilities);
    match kind {
        PluginKind::Loss if vtable.forward_backward.is_none() => {
            return Err(named("a loss needs vtable.forward_backward".into()));
        }
        PluginKind::Miner if vtable.mine.is_none() => return Err(named("a miner needs vtable.mine".into())),
        PluginKind::Miner if capabilities.produces_pairs == capabilities.produces_triplets => {
            return Err(named("a miner must declare exactly one of PRODUCES_PAIRS and PRODUCES_TRIPLETS".into()));
        }
        _ => {}
    }
    if capabilities.supports_state && (vtable.save_state.is_none() || vtable.load_state.is_none()) {
        return Err(named("SUPPORTS_STATE is set but save_state or load_state is null".into()));
    }
    Ok(PluginInfo {
        kind,
        id,
        name,
        version,
        summary,
        default_config,
        capabilities,
        sdk_version: String::new(),
        abi_version: (0, 0),
        source: Source { library: PathBuf::new(), crate_dir: None },
        descriptor: d,
        vtable,
    })
}
