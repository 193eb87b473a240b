//! Every loaded plugin, the problems met on the way, and lookup by id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::build::{self, BuildReport};
use super::discover::{PluginCrate, libraries_in, plugin_crates, plugin_path_dirs};
use super::errors::describe;
use super::library::{self, PluginInfo, PluginKind};

/// How the host finds plugins.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Project root holding `plugins/`; `None` looks upwards from the current directory.
    pub root: Option<PathBuf>,
    /// Build stale plugin crates with cargo before loading.
    pub build: bool,
    /// Directories of prebuilt libraries (by default, `DMLBENCH_PLUGIN_PATH`).
    pub plugin_path: Vec<PathBuf>,
    /// Load each library in a child process first, so that one that crashes or hangs while
    /// loading is skipped rather than ending this process ([`super::probe`]). Only the
    /// `dmlbench` binary can (it runs itself as the child); off by default.
    pub load_in_child_first: bool,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions { root: None, build: true, plugin_path: plugin_path_dirs(), load_in_child_first: false }
    }
}

/// Something that kept a library or crate from loading.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The library, crate directory or manifest at fault.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// No plugin of the kind with the id asked for. The message lists the ids of that kind that
/// do exist, and points at the libraries that could not be loaded, which might explain it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no {kind} plugin '{id}'; known {}: {}{}", plural(*kind), list(known), unloadable_note(*unloadable))]
pub struct UnknownPlugin {
    /// The kind asked for.
    pub kind: PluginKind,
    /// The id asked for.
    pub id: String,
    /// The ids of that kind that are loaded.
    pub known: Vec<String>,
    /// How many libraries or crates could not be loaded.
    pub unloadable: usize,
}

fn plural(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Loss => "losses",
        PluginKind::Miner => "miners",
    }
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() { "none".to_string() } else { ids.join(", ") }
}

fn unloadable_note(count: usize) -> String {
    match count {
        0 => String::new(),
        1 => " (1 library could not be loaded; see `dmlbench plugins list`)".into(),
        n => format!(" ({n} libraries could not be loaded; see `dmlbench plugins list`)"),
    }
}

/// The loaded plugins.
#[derive(Debug, Default)]
pub struct Registry {
    plugins: Vec<PluginInfo>,
    problems: Vec<Problem>,
    root: Option<PathBuf>,
}

/// The nearest ancestor of `start` with a `plugins/` directory and a `Cargo.toml`.
fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join("plugins").is_dir() && dir.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
}

/// The project root: the one given, else the nearest project above the current directory,
/// else the source tree this binary was built from (when it still exists).
pub fn resolve_root(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(root) = given {
        return Some(root.to_path_buf());
    }
    let cwd = std::env::current_dir().ok();
    cwd.as_deref().and_then(find_root).or_else(|| find_root(Path::new(env!("CARGO_MANIFEST_DIR"))))
}

impl Registry {
    /// Finds, builds (if asked) and loads every plugin. Never fails as a whole: what cannot
    /// be loaded is listed in [`Registry::problems`].
    pub fn open(options: &HostOptions) -> Registry {
        let mut registry = Registry { root: resolve_root(options.root.as_deref()), ..Registry::default() };
        let mut candidates: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        if let Some(root) = registry.root.clone() {
            candidates.extend(registry.crate_libraries(&root, options.build));
        }
        for dir in &options.plugin_path {
            match libraries_in(dir) {
                Ok(libs) => candidates.extend(libs.into_iter().map(|l| (l, None))),
                Err(error) => registry.problems.push(Problem {
                    path: dir.clone(),
                    reason: format!("DMLBENCH_PLUGIN_PATH entry: {}", describe(&error)),
                }),
            }
        }
        let verdicts =
            if options.load_in_child_first { super::probe::vet(&candidates) } else { vec![None; candidates.len()] };
        for ((path, crate_dir), verdict) in candidates.into_iter().zip(verdicts) {
            if let Some(reason) = verdict {
                registry.problems.push(Problem { path, reason });
                continue;
            }
            match library::load(&path, crate_dir.as_deref()) {
                Ok(plugins) => registry.plugins.extend(plugins),
                Err(error) => registry.problems.push(Problem { path, reason: describe(&error) }),
            }
        }
        registry.reject_duplicates();
        registry.plugins.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        registry
    }

    /// Libraries of the crates under `root/plugins`, after building the stale ones.
    fn crate_libraries(&mut self, root: &Path, build: bool) -> Vec<(PathBuf, Option<PathBuf>)> {
        let (crates, manifest_problems) = plugin_crates(&root.join("plugins"));
        self.problems
            .extend(manifest_problems.into_iter().map(|(path, error)| Problem { path, reason: describe(&error) }));
        let stale: Vec<&PluginCrate> = crates.iter().filter(|c| build::is_stale(root, c)).collect();
        let report = if build { build::build(root, &stale) } else { BuildReport::default() };
        let mut out = Vec::new();
        for krate in &crates {
            let library = build::library_path(root, krate);
            // After a failed build, some crates may have built and others not: look again.
            let unusable =
                stale.contains(&krate) && (!build || (report.failure.is_some() && build::is_stale(root, krate)));
            if unusable {
                // An old library of a crate that failed to build is not loaded either: it
                // would run code that no longer matches its sources.
                let reason = match &report.failure {
                    Some(failure) if build => format!("cargo build -p {} failed:\n{failure}", krate.package),
                    _ => format!(
                        "{} is missing or older than its sources; run without --no-build to build it",
                        library.display()
                    ),
                };
                self.problems.push(Problem { path: krate.dir.clone(), reason });
                continue;
            }
            out.push((library, Some(krate.dir.clone())));
        }
        out
    }

    /// Removes every plugin whose (kind, id) is declared more than once, with a problem
    /// naming all the libraries involved.
    fn reject_duplicates(&mut self) {
        let mut by_key: BTreeMap<(PluginKind, String), Vec<PathBuf>> = BTreeMap::new();
        for p in &self.plugins {
            by_key.entry((p.kind, p.id.clone())).or_default().push(p.source.library.clone());
        }
        for ((kind, id), libraries) in &by_key {
            if libraries.len() > 1 {
                let list: Vec<String> = libraries.iter().map(|l| l.display().to_string()).collect();
                self.problems.push(Problem {
                    path: libraries[0].clone(),
                    reason: format!("duplicate {kind} id '{id}', declared by {}; all are skipped", list.join(" and ")),
                });
            }
        }
        self.plugins.retain(|p| by_key[&(p.kind, p.id.clone())].len() == 1);
    }

    /// Every loaded plugin, sorted by kind and id.
    pub fn plugins(&self) -> &[PluginInfo] {
        &self.plugins
    }

    /// What could not be loaded, and why.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The project root plugins were looked for under, if one was found.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Every plugin matching `spec`: `ID` (any kind), `loss:ID` or `miner:ID`.
    pub fn matching(&self, spec: &str) -> Vec<&PluginInfo> {
        let (kind, id) = match spec.split_once(':') {
            Some(("loss", id)) => (Some(PluginKind::Loss), id),
            Some(("miner", id)) => (Some(PluginKind::Miner), id),
            _ => (None, spec),
        };
        self.plugins.iter().filter(|p| p.id == id && kind.is_none_or(|k| k == p.kind)).collect()
    }

    /// The one plugin of `kind` with this id (`spec` may also be written `kind:ID`).
    pub fn get(&self, kind: PluginKind, spec: &str) -> Result<&PluginInfo, UnknownPlugin> {
        let id = spec.strip_prefix(&format!("{kind}:")).unwrap_or(spec);
        self.plugins.iter().find(|p| p.kind == kind && p.id == id).ok_or_else(|| UnknownPlugin {
            kind,
            id: id.to_string(),
            known: self.plugins.iter().filter(|p| p.kind == kind).map(|p| p.id.clone()).collect(),
            unloadable: self.problems.len(),
        })
    }
}
