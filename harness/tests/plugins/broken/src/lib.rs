//! Plugins that break the contract on purpose, one way each. The host's tests load them
//! from `DMLBENCH_PLUGIN_PATH` and expect `dmlbench plugins check` to fail each with a
//! message saying what is wrong, while the host itself keeps running.

use dmlbench_sdk::{Batch, Context, Loss, Miner, Plugin, Result, Stats, Triplets, TupleForm, Tuples};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// L = Σ z², with a gradient of 3z instead of 2z.
pub struct WrongGradient;

impl Plugin for WrongGradient {
    type Config = NoConfig;
    const ID: &'static str = "wrong_gradient";
    const NAME: &'static str = "Wrong gradient";
    const VERSION: &'static str = "0.0.1";
    const SUMMARY: &'static str = "Σ z² with the gradient 3z (wrong on purpose)";
    fn new(_: NoConfig, _: &Context) -> Result<Self> {
        Ok(WrongGradient)
    }
}

impl Loss for WrongGradient {
    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], _: &mut Stats) -> Result<f64> {
        let z = batch.embeddings.data;
        for (g, v) in grad.iter_mut().zip(z) {
            *g = 3.0 * v;
        }
        Ok(z.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
    }
}

/// Panics on every batch.
pub struct Panicking;

impl Plugin for Panicking {
    type Config = NoConfig;
    const ID: &'static str = "panicking";
    const NAME: &'static str = "Panicking";
    const VERSION: &'static str = "0.0.1";
    const SUMMARY: &'static str = "panics in forward_backward (on purpose)";
    fn new(_: NoConfig, _: &Context) -> Result<Self> {
        Ok(Panicking)
    }
}

impl Loss for Panicking {
    fn forward_backward(&mut self, _: &Batch<'_>, _: &mut [f32], _: &mut Stats) -> Result<f64> {
        panic!("index out of bounds in the loss (deliberate)")
    }
}

/// Returns a triplet whose negative is one past the last row.
pub struct OutOfRange;

impl Plugin for OutOfRange {
    type Config = NoConfig;
    const ID: &'static str = "out_of_range";
    const NAME: &'static str = "Out of range";
    const VERSION: &'static str = "0.0.1";
    const SUMMARY: &'static str = "mines a triplet with an index past the batch (on purpose)";
    fn new(_: NoConfig, _: &Context) -> Result<Self> {
        Ok(OutOfRange)
    }
}

impl Miner for OutOfRange {
    const OUTPUT: TupleForm = TupleForm::Triplets;
    fn mine(&mut self, batch: &Batch<'_>, _: &mut Stats) -> Result<Tuples> {
        let n = batch.n() as u32;
        Ok(Tuples::Triplets(Triplets { a: vec![0], p: vec![n], n: vec![n] }))
    }
}

dmlbench_sdk::export_plugins!(loss: WrongGradient, loss: Panicking, miner: OutOfRange);
