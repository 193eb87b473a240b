//! Loading a library in a child process before loading it in `dmlbench` itself.
//!
//! Loading a plugin library runs its code: the library's static initialisers, its entry
//! function, the descriptors it returns. A library that crashes or hangs there would end or
//! stall the `dmlbench` command that merely looked for plugins. So the command loads every
//! library it has not seen before in a child process first ([`isolated::load_all_in_child`]):
//! one child for all of them, unless one ends it, in which case that library is skipped with
//! how its process ended (a registry problem, shown by `dmlbench plugins list`) and the others
//! are tried in a new child.
//!
//! A library that loaded (or was refused with a reason, which loading it again gives safely) is
//! remembered by its path, size, modification time and this dmlbench's version, as an empty
//! file in `$XDG_CACHE_HOME/dmlbench/loaded-plugins` (`~/.cache/...`), so that a run and its
//! cell processes start no extra process once the plugins are built. Without a writable cache
//! directory every command probes again.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use std::hash::{DefaultHasher, Hash, Hasher};

use super::isolated::{self, DEFAULT_CREATE_TIMEOUT};

/// For each candidate (library, crate directory): `None` when it may be loaded in this
/// process, or why not (how its test process ended).
pub fn vet(candidates: &[(PathBuf, Option<PathBuf>)]) -> Vec<Option<String>> {
    let cache = cache_dir();
    let marks: Vec<Option<PathBuf>> =
        candidates.iter().map(|(library, _)| Some(cache.as_ref()?.join(key(library)?))).collect();
    let unvetted: Vec<usize> =
        (0..candidates.len()).filter(|&i| !marks[i].as_ref().is_some_and(|m| m.is_file())).collect();
    let mut verdicts = vec![None; candidates.len()];
    if unvetted.is_empty() {
        return verdicts;
    }
    let libraries: Vec<_> = unvetted.iter().map(|&i| candidates[i].clone()).collect();
    for (&i, verdict) in unvetted.iter().zip(isolated::load_all_in_child(&libraries, DEFAULT_CREATE_TIMEOUT)) {
        match verdict {
            Some(reason) => verdicts[i] = Some(reason),
            None => {
                if let Some(mark) = &marks[i] {
                    // Only a cache; a failure to write it costs a probe next time.
                    let _ = std::fs::write(mark, b"");
                }
            }
        }
    }
    verdicts
}

/// What identifies a build of a library, for this dmlbench.
fn key(library: &Path) -> Option<String> {
    let metadata = std::fs::metadata(library).ok()?;
    let modified = metadata.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    let path = std::fs::canonicalize(library).ok()?;
    let identity = format!("{}\n{}\n{}\n{modified}", env!("CARGO_PKG_VERSION"), path.display(), metadata.len());
    // Only a cache key: should a new Rust release hash it differently, the libraries are
    // probed once more.
    let mut hasher = DefaultHasher::new();
    identity.hash(&mut hasher);
    Some(format!("{:016x}", hasher.finish()))
}

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    let dir = base.join("dmlbench").join("loaded-plugins");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}
