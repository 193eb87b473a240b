//! Finding plugin crates under `plugins/` and prebuilt libraries on `DMLBENCH_PLUGIN_PATH`.

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

/// A crate under `plugins/` that builds a plugin library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginCrate {
    /// Cargo package name (what `cargo build -p` takes).
    pub package: String,
    /// The crate's directory.
    pub dir: PathBuf,
    /// File name of the library it builds (`libdmlbench_loss_contrastive.so` on Linux).
    pub library_file: String,
}

/// A `Cargo.toml` under `plugins/` that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// It could not be read from disk.
    #[error("cannot read")]
    Read(#[source] std::io::Error),
    /// It is not TOML.
    #[error("invalid TOML")]
    Toml(#[source] toml::de::Error),
}

/// A directory of prebuilt libraries that cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read directory")]
pub struct DirectoryError(#[source] pub std::io::Error);

/// Crates under `plugins_dir` whose `[lib]` builds a `cdylib`. Manifests that cannot be
/// read or parsed are returned as problems (path, error), not silently skipped.
pub fn plugin_crates(plugins_dir: &Path) -> (Vec<PluginCrate>, Vec<(PathBuf, ManifestError)>) {
    let mut crates = Vec::new();
    let mut problems = Vec::new();
    let walker = WalkDir::new(plugins_dir).max_depth(4).sort_by_file_name().into_iter().filter_entry(|e| {
        e.depth() == 0 || (e.file_name() != "target" && !e.file_name().to_string_lossy().starts_with('.'))
    });
    for entry in walker.flatten() {
        if entry.file_name() != "Cargo.toml" {
            continue;
        }
        let manifest = entry.path();
        match read_manifest(manifest) {
            Ok(Some(c)) => crates.push(c),
            Ok(None) => {}
            Err(reason) => problems.push((manifest.to_path_buf(), reason)),
        }
    }
    (crates, problems)
}

fn read_manifest(manifest: &Path) -> Result<Option<PluginCrate>, ManifestError> {
    let text = std::fs::read_to_string(manifest).map_err(ManifestError::Read)?;
    let value: toml::Table = toml::from_str(&text).map_err(ManifestError::Toml)?;
    let Some(package) = value.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()) else {
        return Ok(None); // a workspace manifest, not a crate
    };
    let lib = value.get("lib");
    let is_cdylib = lib
        .and_then(|l| l.get("crate-type"))
        .and_then(|t| t.as_array())
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
    if !is_cdylib {
        return Ok(None);
    }
    let lib_name = lib
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
        .map_or_else(|| package.replace('-', "_"), str::to_string);
    Ok(Some(PluginCrate {
        package: package.to_string(),
        dir: manifest.parent().expect("a manifest has a directory").to_path_buf(),
        library_file: format!("{DLL_PREFIX}{lib_name}{DLL_SUFFIX}"),
    }))
}

/// The directories listed in `DMLBENCH_PLUGIN_PATH` (separated as `PATH` is).
pub fn plugin_path_dirs() -> Vec<PathBuf> {
    std::env::var_os("DMLBENCH_PLUGIN_PATH")
        .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default()
}

/// Shared libraries directly inside `dir`, sorted by name.
pub fn libraries_in(dir: &Path) -> Result<Vec<PathBuf>, DirectoryError> {
    let entries = std::fs::read_dir(dir).map_err(DirectoryError)?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(DLL_SUFFIX)))
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cdylib_crates_and_reports_bad_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("losses/a/Cargo.toml", "[package]\nname = \"loss-a\"\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n");
        write("losses/b/Cargo.toml", "[package]\nname = \"b\"\n[lib]\nname = \"custom\"\ncrate-type = [\"cdylib\"]\n");
        write("sdk/Cargo.toml", "[package]\nname = \"sdk\"\n");
        write("losses/broken/Cargo.toml", "[package\n");
        write("losses/a/target/x/Cargo.toml", "[package]\nname = \"ignored\"\n[lib]\ncrate-type = [\"cdylib\"]\n");
        let (crates, problems) = plugin_crates(dir.path());
        let names: Vec<(&str, &str)> = crates.iter().map(|c| (c.package.as_str(), c.library_file.as_str())).collect();
        assert_eq!(
            names,
            vec![
                ("loss-a", format!("{DLL_PREFIX}loss_a{DLL_SUFFIX}").as_str()),
                ("b", format!("{DLL_PREFIX}custom{DLL_SUFFIX}").as_str())
            ]
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].0.ends_with("losses/broken/Cargo.toml") && matches!(problems[0].1, ManifestError::Toml(_)));
    }
}
