//! `dmlbench plugins new`: a new plugin crate that builds, is discovered, passes
//! `plugins check` and its own tests, and shows the shape every plugin has.
//!
//! The loss template is a real (small) loss, the within-batch class-centre pull
//! L = 1/(2n) Σ_i ‖z_i − μ_{y_i}‖², and the miner template draws one random positive and one
//! random negative per anchor; each comes with a plain-loop reference test and, for the loss,
//! a finite-difference check, so a new plugin starts from a tested example.

use std::path::{Path, PathBuf};

use super::library::{PluginKind, valid_id};

/// What [`scaffold`] wrote.
#[derive(Clone, Debug)]
pub struct Scaffolded {
    /// The new crate's directory.
    pub dir: PathBuf,
    /// Its cargo package name.
    pub package: String,
    /// Files written, relative to `dir`.
    pub files: Vec<&'static str>,
}

fn camel_case(id: &str) -> String {
    id.split('_')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// Why a plugin crate could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The id is not a plugin id.
    #[error("'{0}' is not a valid plugin id: use lowercase letters, digits and '_', starting with a letter")]
    InvalidId(String),
    /// The crate's directory is taken.
    #[error("{} already exists", .0.display())]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("{}", .path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

/// Writes a new plugin crate `id` of `kind` under `root/plugins/{losses,miners}/id`.
pub fn scaffold(root: &Path, id: &str, kind: PluginKind) -> Result<Scaffolded, ScaffoldError> {
    if !valid_id(id) {
        return Err(ScaffoldError::InvalidId(id.to_string()));
    }
    let group = match kind {
        PluginKind::Loss => "losses",
        PluginKind::Miner => "miners",
    };
    let dir = root.join("plugins").join(group).join(id);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let package = format!("dmlbench-{}-{}", kind.as_str(), id.replace('_', "-"));
    let rust_name = package.replace('-', "_");
    let type_name = camel_case(id);
    let (lib, test) = match kind {
        PluginKind::Loss => (LOSS_LIB, LOSS_TEST),
        PluginKind::Miner => (MINER_LIB, MINER_TEST),
    };
    let fill = |template: &str| {
        template
            .replace("{{ID}}", id)
            .replace("{{TYPE}}", &type_name)
            .replace("{{CRATE}}", &rust_name)
            .replace("{{PACKAGE}}", &package)
    };
    let files: [(&'static str, String); 3] =
        [("Cargo.toml", fill(CARGO_TOML)), ("src/lib.rs", fill(lib)), ("tests/reference.rs", fill(test))];
    for (rel, text) in &files {
        let path = dir.join(rel);
        let failed = |error| ScaffoldError::Write { path: path.clone(), error };
        std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(failed)?;
        std::fs::write(&path, text).map_err(failed)?;
    }
    Ok(Scaffolded { dir, package, files: files.iter().map(|(rel, _)| *rel).collect() })
}

const CARGO_TOML: &str = r#"[package]
name = "{{PACKAGE}}"
description = "The {{ID}} plugin for dmlbench"
version = "0.1.0"
edition.workspace = true
license.workspace = true

[lib]
# cdylib: the library dmlbench loads; rlib: lets this crate's tests call it directly.
crate-type = ["cdylib", "rlib"]

[dependencies]
dmlbench-sdk.workspace = true
serde.workspace = true
"#;

const LOSS_LIB: &str = r#"//! The `{{ID}}` loss.
//!
//! Replace this example with your formula, and say where it comes from. The example pulls
//! each embedding towards the mean of its class in the batch:
//!
//! ```text
//! L = weight / (2n) · Σ_i ‖z_i − μ_{y_i}‖²,   μ_c = mean of the embeddings of class c
//! dL/dz_i = weight / n · (z_i − μ_{y_i})
//! ```
//!
//! (The terms through μ cancel: within a class the deviations sum to zero.)

use dmlbench_sdk::{Batch, Context, Error, Loss, Plugin, Result, Stats};
use serde::{Deserialize, Serialize};

/// Configuration; every field has a default, unknown fields are errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Scale of the loss.
    pub weight: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { weight: 1.0 }
    }
}

/// The loss.
pub struct {{TYPE}} {
    config: Config,
}

impl Plugin for {{TYPE}} {
    type Config = Config;
    const ID: &'static str = "{{ID}}";
    const NAME: &'static str = "{{TYPE}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "weight/(2n) Σ ‖z_i − μ_{y_i}‖², a pull towards batch class means (example)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        if !(config.weight.is_finite() && config.weight >= 0.0) {
            return Err(Error::bad_config(format!("weight must be finite and non-negative, got {}", config.weight)));
        }
        Ok({{TYPE}} { config })
    }
}

impl Loss for {{TYPE}} {
    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let (n, d) = (batch.n(), batch.d());
        // Class means of the batch, accumulated in f64.
        let mut classes: Vec<(i64, Vec<f64>, usize)> = Vec::new();
        for (i, &label) in batch.labels.iter().enumerate() {
            let at = match classes.iter().position(|c| c.0 == label) {
                Some(at) => at,
                None => {
                    classes.push((label, vec![0.0; d], 0));
                    classes.len() - 1
                }
            };
            for (s, &v) in classes[at].1.iter_mut().zip(batch.embeddings.row(i)) {
                *s += f64::from(v);
            }
            classes[at].2 += 1;
        }
        let scale = self.config.weight / n as f64;
        let mut loss = 0.0;
        for (i, &label) in batch.labels.iter().enumerate() {
            let (_, sum, count) = classes.iter().find(|c| c.0 == label).expect("every label has a class");
            for (k, &v) in batch.embeddings.row(i).iter().enumerate() {
                let deviation = f64::from(v) - sum[k] / *count as f64;
                loss += 0.5 * scale * deviation * deviation;
                grad[i * d + k] = (scale * deviation) as f32;
            }
        }
        stats.record("classes", classes.len() as f64);
        Ok(loss)
    }
}

dmlbench_sdk::export_plugins!(loss: {{TYPE}});
"#;

const LOSS_TEST: &str = r#"//! `{{ID}}` against a plain loop written from its formula, and against finite differences.

use dmlbench_sdk::testing::{assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels, GradCheck};
use dmlbench_sdk::Instance;
use {{CRATE}}::{Config, {{TYPE}}};

/// The formula, term by term.
fn reference(weight: f64, z: &[f32], labels: &[i64], d: usize) -> f64 {
    let n = labels.len();
    let mut total = 0.0;
    for i in 0..n {
        let members: Vec<usize> = (0..n).filter(|&j| labels[j] == labels[i]).collect();
        let mean: Vec<f64> = (0..d)
            .map(|k| members.iter().map(|&j| naive::row(z, d, j)[k]).sum::<f64>() / members.len() as f64)
            .collect();
        total += naive::squared_euclidean(&naive::row(z, d, i), &mean);
    }
    weight * total / (2.0 * n as f64)
}

#[test]
fn matches_the_formula_and_finite_differences() {
    for (n, d, classes, seed) in [(12, 4, 3, 1), (2, 3, 1, 2), (5, 2, 5, 3)] {
        let z = random_embeddings(seed, n, d);
        let labels = random_labels(seed, n, classes);
        let config = Config { weight: 0.7 };
        let mut loss = Instance::<{{TYPE}}>::new(config, context(d, 0)).unwrap();
        let out = loss.forward_backward(&z, &labels, None).unwrap();
        assert_close(out.loss, reference(0.7, &z, &labels, d), 1e-6, "loss");
        check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default()).unwrap();
    }
}

#[test]
fn rejects_a_negative_weight() {
    let config = dmlbench_sdk::instance::parse_config::<{{TYPE}}>("(weight: -1.0)").unwrap();
    let error = Instance::<{{TYPE}}>::new(config, context(2, 0)).err().unwrap();
    assert!(error.message().contains("weight"), "{error}");
}
"#;

const MINER_LIB: &str = r#"//! The `{{ID}}` miner.
//!
//! Replace this example with your strategy, and say where it comes from. The example draws,
//! for every anchor that has both, one positive and one negative uniformly at random, from a
//! generator seeded with the run's seed and a call counter, so runs are reproducible.

use dmlbench_sdk::{Batch, Context, Miner, Plugin, Result, Stats, TupleForm, Triplets, Tuples};
use serde::{Deserialize, Serialize};

/// Configuration; every field has a default, unknown fields are errors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {}

/// The miner.
pub struct {{TYPE}} {
    seed: u64,
    calls: u64,
}

/// A small, fast, seedable generator (SplitMix64).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Plugin for {{TYPE}} {
    type Config = Config;
    const ID: &'static str = "{{ID}}";
    const NAME: &'static str = "{{TYPE}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "one random positive and one random negative per anchor (example)";

    fn new(_config: Config, context: &Context) -> Result<Self> {
        Ok({{TYPE}} { seed: context.seed, calls: 0 })
    }
}

impl Miner for {{TYPE}} {
    const OUTPUT: TupleForm = TupleForm::Triplets;

    fn mine(&mut self, batch: &Batch<'_>, stats: &mut Stats) -> Result<Tuples> {
        let mut state = self.seed ^ self.calls.wrapping_mul(0x2545_f491_4f6c_dd1d);
        self.calls += 1;
        let labels = batch.labels;
        let mut out = Triplets::default();
        for a in 0..labels.len() {
            let positives: Vec<u32> = (0..labels.len()).filter(|&j| j != a && labels[j] == labels[a]).map(|j| j as u32).collect();
            let negatives: Vec<u32> = (0..labels.len()).filter(|&j| labels[j] != labels[a]).map(|j| j as u32).collect();
            if positives.is_empty() || negatives.is_empty() {
                continue;
            }
            out.a.push(a as u32);
            out.p.push(positives[(splitmix(&mut state) % positives.len() as u64) as usize]);
            out.n.push(negatives[(splitmix(&mut state) % negatives.len() as u64) as usize]);
        }
        stats.record("triplets", out.len() as f64);
        Ok(Tuples::Triplets(out))
    }
}

dmlbench_sdk::export_plugins!(miner: {{TYPE}});
"#;

const MINER_TEST: &str = r#"//! `{{ID}}` against the definition: one valid triplet per anchor that has a positive and a
//! negative, reproducible for a seed.

use dmlbench_sdk::testing::{context, random_embeddings, random_labels};
use dmlbench_sdk::{Instance, Tuples};
use {{CRATE}}::{Config, {{TYPE}}};

#[test]
fn one_triplet_per_eligible_anchor_reproducibly() {
    let (n, d) = (20, 4);
    let z = random_embeddings(1, n, d);
    let mut labels = random_labels(1, n, 4);
    labels[0] = 9; // a class of one: no positive, so anchor 0 yields no triplet
    let mine = || Instance::<{{TYPE}}>::new(Config::default(), context(d, 0)).unwrap().mine(&z, &labels).unwrap().0;
    let Tuples::Triplets(t) = mine() else { panic!("expected triplets") };
    let eligible: Vec<u32> = (0..n)
        .filter(|&a| (0..n).any(|j| j != a && labels[j] == labels[a]) && (0..n).any(|j| labels[j] != labels[a]))
        .map(|a| a as u32)
        .collect();
    assert_eq!(t.a, eligible);
    for i in 0..t.len() {
        let (a, p, q) = (t.a[i] as usize, t.p[i] as usize, t.n[i] as usize);
        assert!(a != p && labels[a] == labels[p] && labels[a] != labels[q]);
    }
    assert_eq!(mine(), Tuples::Triplets(t));
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_crate_and_refuses_to_overwrite_or_take_bad_ids() {
        let root = tempfile::tempdir().unwrap();
        let made = scaffold(root.path(), "pull_to_mean", PluginKind::Loss).unwrap();
        assert_eq!(made.package, "dmlbench-loss-pull-to-mean");
        let lib = std::fs::read_to_string(made.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct PullToMean") && lib.contains("const ID: &'static str = \"pull_to_mean\""));
        assert!(!lib.contains("{{"), "unfilled placeholder");
        assert!(
            scaffold(root.path(), "pull_to_mean", PluginKind::Loss).unwrap_err().to_string().contains("already exists")
        );
        assert!(
            scaffold(root.path(), "Bad-Id", PluginKind::Miner)
                .unwrap_err()
                .to_string()
                .contains("not a valid plugin id")
        );
    }
}
