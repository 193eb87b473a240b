//! The conformance suite behind `dmlbench plugins check`.
//!
//! Every plugin, whatever language it is written in, is held to the same contract:
//! - a loss's gradient agrees with finite differences of its own loss value on random
//!   batches of several shapes, including one class only, all singletons and n = 2, and with
//!   mined tuples when it accepts them (for a piecewise smooth loss, differences that stay on
//!   the smooth piece it names); a miner's tuples are valid on the same shapes;
//! - the same seed gives bit-identical results;
//! - bad input is rejected with `BAD_INPUT` (NaN embeddings, a label count that does not
//!   match n, an out-of-range tuple index) and a malformed configuration with `BAD_CONFIG`,
//!   while the published default configuration is accepted;
//! - a plugin with state restores it exactly: an instance loaded from another's saved state
//!   computes the same thing and saves the same bytes;
//! - a plugin that accepts reference embeddings (a cross-batch memory) gets, against a memory
//!   holding the batch and older rows, a batch gradient that agrees with finite differences
//!   (the references held constant) and valid tuples; a loss given its own batch as references
//!   computes its plain loss.
//!
//! The suite calls plugin code, so `dmlbench plugins check` runs it in a child process per
//! plugin (see [`super::isolated`]); [`run_suite`] reports each check as it starts and ends,
//! so that a child that dies can be blamed on the check it was running.

use dmlbench_abi::{PIECE_STAT, Status};

use dmlbench_testkit::{GradCheck, check_gradient, check_piecewise_gradient, random_embeddings};
use dmlbench_tuples::{Triplets, Tuples};
use dmlbench_tuples::{all_pairs, all_triplets, all_triplets_in};
use serde::{Deserialize, Serialize};

use super::handle::{CreateOptions, LossHandle, MinerHandle, PluginError, References};
use super::library::{PluginInfo, PluginKind};

/// Embedding size of the test batches: small enough for finite differences on every
/// coordinate, large enough for distances to be generic.
const D: usize = 8;
/// Class count given to `create`; every test label lies below it.
const CLASSES: usize = 6;

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// `loss:ID` or `miner:ID`.
    pub plugin: String,
    /// What was checked.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// A batch shape of the suite.
struct Shape {
    name: &'static str,
    labels: Vec<i64>,
    seed: u64,
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape { name: "16 rows, 4 classes", labels: vec![0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3], seed: 1 },
        Shape {
            name: "24 rows, 6 classes, uneven",
            labels: (0..24).map(|i| [0, 0, 0, 1, 1, 2, 3, 3, 4, 5][i % 10]).collect(),
            seed: 2,
        },
        Shape { name: "one class only", labels: vec![2; 6], seed: 3 },
        Shape { name: "singletons", labels: vec![0, 1, 2, 3, 4], seed: 4 },
        Shape { name: "n = 2, same class", labels: vec![1, 1], seed: 5 },
        Shape { name: "n = 2, two classes", labels: vec![0, 5], seed: 6 },
    ]
}

fn options(info: &PluginInfo, seed: u64) -> CreateOptions {
    CreateOptions { config: info.default_config.clone(), embedding_dim: D, num_classes: CLASSES, seed, base_lr: 0.1 }
}

/// What the suite reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckEvent {
    /// A check is about to call the plugin.
    Started(String),
    /// A check ended.
    Finished(CheckOutcome),
}

/// Runs checks one at a time and reports each.
struct Report<'a> {
    plugin: String,
    on_event: &'a mut dyn FnMut(CheckEvent),
}

impl Report<'_> {
    fn run(&mut self, check: impl Into<String>, body: impl FnOnce() -> Result<String, String>) {
        let check = check.into();
        (self.on_event)(CheckEvent::Started(check.clone()));
        let (passed, detail) = match body() {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        (self.on_event)(CheckEvent::Finished(CheckOutcome { plugin: self.plugin.clone(), check, passed, detail }));
    }
}

/// Runs the whole suite on one plugin in this process, reporting each check as it starts and
/// ends.
pub fn run_suite(info: &PluginInfo, on_event: &mut dyn FnMut(CheckEvent)) {
    let mut report = Report { plugin: info.qualified_id(), on_event };
    report.run("default config is accepted", || create_check(info, &info.default_config, Status::OK));
    report.run("malformed config is rejected", || create_check(info, "(this is not RON", Status::BAD_CONFIG));
    match info.kind {
        PluginKind::Loss => check_loss(info, &mut report),
        PluginKind::Miner => check_miner(info, &mut report),
    }
}

fn create_check(info: &PluginInfo, config: &str, expected: Status) -> Result<String, String> {
    let options = CreateOptions { config: config.to_string(), ..options(info, 0) };
    let status = match info.kind {
        PluginKind::Loss => LossHandle::create(info, &options).map(drop),
        PluginKind::Miner => MinerHandle::create(info, &options).map(drop),
    }
    .map_or_else(|e| (e.status, e.message), |()| (Status::OK, String::new()));
    expect_status(status, expected)
}

fn expect_status((status, message): (Status, String), expected: Status) -> Result<String, String> {
    let shown = if message.is_empty() { status.name().to_string() } else { format!("{}: {message}", status.name()) };
    if status == expected { Ok(shown) } else { Err(format!("expected {}, got {shown}", expected.name())) }
}

fn status_of<T>(result: Result<T, PluginError>) -> (Status, String) {
    result.map_or_else(|e| (e.status, e.message), |_| (Status::OK, String::new()))
}

fn loss_handle(info: &PluginInfo, seed: u64) -> Result<LossHandle, String> {
    LossHandle::create(info, &options(info, seed)).map_err(|e| e.to_string())
}

fn miner_handle(info: &PluginInfo, seed: u64) -> Result<MinerHandle, String> {
    MinerHandle::create(info, &options(info, seed)).map_err(|e| e.to_string())
}

/// The tuples a loss is checked with on `labels`: none, or every triplet / pair when it
/// needs them.
fn tuples_for(info: &PluginInfo, labels: &[i64], form: Option<&str>) -> Option<Tuples> {
    match form {
        Some("pairs") => Some(Tuples::Pairs(all_pairs(labels))),
        Some(_) => Some(Tuples::Triplets(all_triplets(labels))),
        None if info.capabilities.needs_tuples => Some(Tuples::Triplets(all_triplets(labels))),
        None => None,
    }
}

fn gradient_check(info: &PluginInfo, shape: &Shape, form: Option<&str>) -> Result<String, String> {
    let mut loss = loss_handle(info, 0)?;
    if info.capabilities.owns_parameters {
        // Parameters may start at zero (the paper's classifier does), where the gradient
        // with respect to the embeddings is exactly zero and could not be wrong: check it
        // after a few steps instead.
        train_a_little(&mut loss, 3)?;
    }
    let labels = &shape.labels;
    let z = random_embeddings(shape.seed, labels.len(), D);
    let tuples = tuples_for(info, labels, form);
    let out = loss.forward_backward(&z, D, labels, tuples.as_ref()).map_err(|e| e.to_string())?;
    let options = GradCheck { columns: D, ..GradCheck::default() };
    let mut eval = |x: &[f32]| loss.forward_backward(x, D, labels, tuples.as_ref()).map_err(|e| e.to_string());
    let report = if info.capabilities.piecewise_smooth {
        // The loss names its smooth pieces: differences never straddle a kink.
        let f = |x: &[f32]| {
            let out = eval(x)?;
            let piece = out.piece.ok_or_else(|| {
                format!("the loss declares itself piecewise smooth but recorded no '{PIECE_STAT}' statistic")
            })?;
            Ok((out.loss, piece))
        };
        check_piecewise_gradient(f, &z, &out.grad, &options)?
    } else {
        check_gradient(|x: &[f32]| eval(x).map(|o| o.loss), &z, &out.grad, &options)?
    };
    Ok(format!(
        "loss {:.4}, {} coordinates agree (max error {:.1e}){}",
        out.loss,
        report.checked,
        report.max_abs_error,
        if report.kinks > 0 { format!(", {} at non-smooth points skipped", report.kinks) } else { String::new() }
    ))
}

fn check_loss(info: &PluginInfo, report: &mut Report) {
    for shape in shapes() {
        report.run(format!("gradient: {}", shape.name), || gradient_check(info, &shape, None));
    }
    let caps = info.capabilities;
    if caps.accepts_tuples() {
        let shape = &shapes()[0];
        if caps.accepts_triplets {
            report.run("gradient: with mined triplets", || gradient_check(info, shape, Some("triplets")));
        }
        if caps.accepts_pairs {
            report.run("gradient: with mined pairs", || gradient_check(info, shape, Some("pairs")));
        }
    }
    report.run("same seed, same result", || loss_determinism(info));

    let shape = &shapes()[0];
    let (labels, n) = (&shape.labels, shape.labels.len());
    let tuples = tuples_for(info, labels, None);
    let mut z = random_embeddings(9, n, D);
    z[3 * D + 2] = f32::NAN;
    report.run("NaN embedding is rejected", || {
        loss_handle(info, 0).and_then(|mut l| {
            expect_status(status_of(l.forward_backward_unchecked(n, D, &z, labels, tuples.as_ref())), Status::BAD_INPUT)
        })
    });
    let z = random_embeddings(9, n, D);
    report.run("label count mismatch is rejected", || {
        loss_handle(info, 0).and_then(|mut l| {
            expect_status(
                status_of(l.forward_backward_unchecked(n, D, &z, &labels[..n - 1], tuples.as_ref())),
                Status::BAD_INPUT,
            )
        })
    });
    if caps.accepts_tuples() {
        let bad = Tuples::Triplets(Triplets { a: vec![0], p: vec![4], n: vec![n as u32] });
        report.run("out-of-range tuple index is rejected", || {
            loss_handle(info, 0).and_then(|mut l| {
                expect_status(status_of(l.forward_backward_unchecked(n, D, &z, labels, Some(&bad))), Status::BAD_INPUT)
            })
        });
    }
    if caps.accepts_references {
        report.run("references: gradient against a memory", || reference_gradient(info));
        report.run("references: the batch itself gives the plain loss", || references_to_itself(info));
    }
    if caps.owns_parameters {
        report.run("step updates parameters", || loss_step(info));
    }
    if caps.supports_state {
        report.run("state round trip", || loss_state_round_trip(info));
    }
}

/// A memory of 24 rows for the first shape's 16-row batch: the batch's rows in slots 5..21
/// (as a ring buffer holds the latest batch), older random rows of every class elsewhere.
struct Memory {
    embeddings: Vec<f32>,
    labels: Vec<i64>,
    self_rows: Vec<u32>,
}

impl Memory {
    fn around(z: &[f32], labels: &[i64]) -> Memory {
        let (m, first) = (24, 5);
        let mut embeddings = random_embeddings(77, m, D);
        let mut memory_labels: Vec<i64> = (0..m).map(|i| (i % CLASSES) as i64).collect();
        for (i, &label) in labels.iter().enumerate() {
            embeddings[(first + i) * D..(first + i + 1) * D].copy_from_slice(&z[i * D..(i + 1) * D]);
            memory_labels[first + i] = label;
        }
        let self_rows = (0..labels.len()).map(|i| (first + i) as u32).collect();
        Memory { embeddings, labels: memory_labels, self_rows }
    }

    fn references(&self) -> References<'_> {
        References { embeddings: &self.embeddings, labels: &self.labels, self_rows: Some(&self.self_rows) }
    }
}

fn reference_gradient(info: &PluginInfo) -> Result<String, String> {
    let shape = &shapes()[0];
    let labels = &shape.labels;
    let z = random_embeddings(shape.seed, labels.len(), D);
    let memory = Memory::around(&z, labels);
    let references = memory.references();
    let tuples = info.capabilities.needs_tuples.then(|| Tuples::Triplets(all_triplets_in(references.rows(labels))));
    let mut loss = loss_handle(info, 0)?;
    let mut at = |x: &[f32]| {
        loss.forward_backward_against(x, D, labels, Some(&references), tuples.as_ref()).map_err(|e| e.to_string())
    };
    let out = at(&z)?;
    // The memory keeps the batch's embeddings of the moment it was filled: moving the batch
    // does not move its copies, so only the anchor side has a gradient.
    let report =
        check_gradient(|x| at(x).map(|o| o.loss), &z, &out.grad, &GradCheck { columns: D, ..GradCheck::default() })?;
    Ok(format!(
        "loss {:.4} against {} references, {} coordinates agree (max error {:.1e})",
        out.loss,
        memory.labels.len(),
        report.checked,
        report.max_abs_error
    ))
}

fn references_to_itself(info: &PluginInfo) -> Result<String, String> {
    let shape = &shapes()[1];
    let labels = &shape.labels;
    let z = random_embeddings(shape.seed, labels.len(), D);
    let tuples = tuples_for(info, labels, None);
    let identity: Vec<u32> = (0..labels.len() as u32).collect();
    let itself = References { embeddings: &z, labels, self_rows: Some(&identity) };
    let plain = loss_handle(info, 0)?.forward_backward(&z, D, labels, tuples.as_ref()).map_err(|e| e.to_string())?;
    let against = loss_handle(info, 0)?
        .forward_backward_against(&z, D, labels, Some(&itself), tuples.as_ref())
        .map_err(|e| e.to_string())?;
    if (plain.loss - against.loss).abs() <= 1e-5 * plain.loss.abs().max(1.0) {
        Ok(format!("{:.6} both ways", plain.loss))
    } else {
        Err(format!("loss {} plain but {} against its own batch as references", plain.loss, against.loss))
    }
}

fn loss_determinism(info: &PluginInfo) -> Result<String, String> {
    let shape = &shapes()[1];
    let z = random_embeddings(shape.seed, shape.labels.len(), D);
    let tuples = tuples_for(info, &shape.labels, None);
    let run = || -> Result<(f64, Vec<f32>), String> {
        let mut l = loss_handle(info, 42)?;
        let out = l.forward_backward(&z, D, &shape.labels, tuples.as_ref()).map_err(|e| e.to_string())?;
        Ok((out.loss, out.grad))
    };
    let (a, b) = (run()?, run()?);
    if a.0.to_bits() == b.0.to_bits() && a.1.iter().zip(&b.1).all(|(x, y)| x.to_bits() == y.to_bits()) {
        Ok("two instances with seed 42 agree bit for bit".into())
    } else {
        Err(format!("two instances with seed 42 differ: loss {} vs {}", a.0, b.0))
    }
}

/// Runs forward, backward and step a few times, so parameters move away from their
/// initial values.
fn train_a_little(loss: &mut LossHandle, rounds: u64) -> Result<(), String> {
    let labels = &shapes()[0].labels;
    for round in 0..rounds {
        let z = random_embeddings(100 + round, labels.len(), D);
        let tuples = tuples_for(loss.info(), labels, None);
        loss.forward_backward(&z, D, labels, tuples.as_ref()).map_err(|e| e.to_string())?;
        loss.step(1.0).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn probe_loss(loss: &mut LossHandle) -> Result<(f64, Vec<f32>), String> {
    let labels = &shapes()[1].labels;
    let z = random_embeddings(777, labels.len(), D);
    let tuples = tuples_for(loss.info(), labels, None);
    let out = loss.forward_backward(&z, D, labels, tuples.as_ref()).map_err(|e| e.to_string())?;
    Ok((out.loss, out.grad))
}

fn loss_step(info: &PluginInfo) -> Result<String, String> {
    let mut loss = loss_handle(info, 0)?;
    let before = probe_loss(&mut loss)?;
    train_a_little(&mut loss, 3)?;
    let after = probe_loss(&mut loss)?;
    if before == after {
        Err("three steps left the loss and its gradient unchanged; step does not update the parameters".into())
    } else {
        Ok(format!("loss on a fixed batch went from {:.4} to {:.4}", before.0, after.0))
    }
}

fn loss_state_round_trip(info: &PluginInfo) -> Result<String, String> {
    let mut original = loss_handle(info, 0)?;
    train_a_little(&mut original, 3)?;
    let bytes = original.save_state().map_err(|e| e.to_string())?;
    let mut restored = loss_handle(info, 0)?;
    restored.load_state(&bytes).map_err(|e| e.to_string())?;
    if probe_loss(&mut original)? != probe_loss(&mut restored)? {
        return Err("an instance loaded from saved state computes a different loss or gradient".into());
    }
    let again = restored.save_state().map_err(|e| e.to_string())?;
    if again != bytes {
        return Err("saving restored state gives different bytes".into());
    }
    let garbage = restored.load_state(b"not a state").map_err(|e| e.status);
    if garbage.is_ok() {
        return Err("loading garbage bytes was accepted".into());
    }
    Ok(format!("{} bytes restore exactly; garbage is rejected", bytes.len()))
}

fn describe_tuples(t: &Tuples) -> String {
    match t {
        Tuples::Triplets(t) => format!("{} triplets", t.len()),
        Tuples::Pairs(p) => format!("{} positive and {} negative pairs", p.positives(), p.negatives()),
    }
}

fn check_miner(info: &PluginInfo, report: &mut Report) {
    for shape in shapes() {
        report.run(format!("valid tuples: {}", shape.name), || {
            miner_handle(info, 0).and_then(|mut m| {
                let z = random_embeddings(shape.seed, shape.labels.len(), D);
                m.mine(&z, D, &shape.labels)
                    .map(|o| format!("{}, all valid", describe_tuples(&o.tuples)))
                    .map_err(|e| e.to_string())
            })
        });
    }
    let shape = &shapes()[1];
    let z = random_embeddings(shape.seed, shape.labels.len(), D);
    let run = || -> Result<Tuples, String> {
        let mut m = miner_handle(info, 42)?;
        m.mine(&z, D, &shape.labels).map(|o| o.tuples).map_err(|e| e.to_string())
    };
    report.run("same seed, same result", || {
        run().and_then(|a| {
            if a == run()? {
                Ok("two instances with seed 42 agree".into())
            } else {
                Err("two instances with seed 42 mine different tuples".into())
            }
        })
    });
    let n = shape.labels.len();
    let mut bad = z.clone();
    bad[D + 1] = f32::INFINITY;
    report.run("non-finite embedding is rejected", || {
        miner_handle(info, 0)
            .and_then(|mut m| expect_status(status_of(m.mine_unchecked(n, D, &bad, &shape.labels)), Status::BAD_INPUT))
    });
    report.run("label count mismatch is rejected", || {
        miner_handle(info, 0).and_then(|mut m| {
            expect_status(status_of(m.mine_unchecked(n, D, &z, &shape.labels[..n - 1])), Status::BAD_INPUT)
        })
    });
    if info.capabilities.accepts_references {
        report.run("references: valid tuples against a memory", || {
            let shape = &shapes()[0];
            let z = random_embeddings(shape.seed, shape.labels.len(), D);
            let memory = Memory::around(&z, &shape.labels);
            let mut m = miner_handle(info, 0)?;
            m.mine_against(&z, D, &shape.labels, Some(&memory.references()))
                .map(|o| format!("{}, all valid", describe_tuples(&o.tuples)))
                .map_err(|e| e.to_string())
        });
    }
    if info.capabilities.supports_state {
        report.run("state round trip", || {
            let mut a = miner_handle(info, 0)?;
            a.mine(&z, D, &shape.labels).map_err(|e| e.to_string())?;
            let bytes = a.save_state().map_err(|e| e.to_string())?;
            let mut b = miner_handle(info, 0)?;
            b.load_state(&bytes).map_err(|e| e.to_string())?;
            let (ta, tb) = (a.mine(&z, D, &shape.labels), b.mine(&z, D, &shape.labels));
            match (ta, tb) {
                (Ok(x), Ok(y)) if x == y => Ok(format!("{} bytes restore exactly", bytes.len())),
                _ => Err("an instance loaded from saved state mines differently".to_string()),
            }
        });
    }
}
