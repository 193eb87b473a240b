//! A parameter tensor a loss trains itself (proxies, class weights, a learnable margin): its
//! values, its optimiser, the gradient of the last `forward_backward` waiting for `step`, and
//! its place in the state, under its name and `<name>.momentum`.
//!
//! ```
//! use dmlbench_sdk::classifier::SgdConfig;
//! use dmlbench_sdk::trainable::Trainable;
//! use dmlbench_sdk::Context;
//!
//! let context = Context { embedding_dim: 2, num_classes: 1, seed: 0, base_lr: 0.5 };
//! let mut proxies = Trainable::new("proxies", vec![1, 2], vec![1.0, 0.0], SgdConfig::plain(), &context);
//! proxies.set_gradient(vec![0.2, -0.2]);
//! proxies.step(1.0); // θ − 0.5·g
//! assert_eq!(proxies.value(), &[0.9, 0.1]);
//! proxies.step(1.0); // no new gradient: nothing happens
//! assert_eq!(proxies.value(), &[0.9, 0.1]);
//!
//! let bytes = proxies.save_state().unwrap();
//! let mut restored = Trainable::new("proxies", vec![1, 2], vec![0.0; 2], SgdConfig::plain(), &context);
//! restored.load_state(&bytes).unwrap();
//! assert_eq!(restored.value(), proxies.value());
//! ```

use crate::classifier::{SgdConfig, SgdParam};
use crate::error::{Error, Result};
use crate::plugin::Context;
use crate::state::{TensorMap, save_tensors};

/// A trained parameter tensor; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Trainable {
    name: &'static str,
    momentum_name: String,
    shape: Vec<usize>,
    optimizer: SgdConfig,
    lr: f64,
    param: SgdParam,
    pending: Option<Vec<f32>>,
}

impl Trainable {
    /// A parameter named `name` (its state tensor's name) of `shape`, starting at `values`,
    /// trained with `optimizer` at its learning rate, or the run's.
    pub fn new(
        name: &'static str,
        shape: Vec<usize>,
        values: Vec<f32>,
        optimizer: SgdConfig,
        context: &Context,
    ) -> Self {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "Trainable::new: {name} has the wrong length");
        Trainable {
            name,
            momentum_name: format!("{name}.momentum"),
            shape,
            lr: optimizer.learning_rate(context),
            optimizer,
            param: SgdParam::new(values),
            pending: None,
        }
    }

    /// The values, row-major.
    pub fn value(&self) -> &[f32] {
        &self.param.value
    }

    /// The momentum buffer.
    pub fn momentum(&self) -> &[f32] {
        &self.param.velocity
    }

    /// The learning rate `step` uses before its scale.
    pub fn learning_rate(&self) -> f64 {
        self.lr
    }

    /// The gradient of the last `forward_backward`, until `step` applies it.
    pub fn pending_gradient(&self) -> Option<&[f32]> {
        self.pending.as_deref()
    }

    /// Keeps `gradient` (the parameter's shape) for the next `step`, replacing any earlier one.
    pub fn set_gradient(&mut self, gradient: Vec<f32>) {
        assert_eq!(
            gradient.len(),
            self.param.value.len(),
            "Trainable::set_gradient: {} has the wrong length",
            self.name
        );
        self.pending = Some(gradient);
    }

    /// Forgets the kept gradient: the last call gave the parameter none, so `step` leaves it.
    pub fn clear_gradient(&mut self) {
        self.pending = None;
    }

    /// Applies the kept gradient once, at the learning rate times `lr_scale`; without a new
    /// gradient it does nothing.
    pub fn step(&mut self, lr_scale: f64) {
        if let Some(gradient) = self.pending.take() {
            let o = &self.optimizer;
            self.param.step(&gradient, self.lr * lr_scale, o.momentum, o.weight_decay, o.nesterov);
        }
    }

    /// The state tensors: the values under the parameter's name, the momentum buffer under
    /// `<name>.momentum`. A pending gradient is not saved: save after `step`.
    pub fn tensors(&self) -> [(&str, &[usize], &[f32]); 2] {
        [(self.name, &self.shape, &self.param.value), (&self.momentum_name, &self.shape, &self.param.velocity)]
    }

    /// Reads what [`tensors`](Self::tensors) saved, taking both out of `map`, without changing
    /// anything yet: wrong names or shapes, and non-finite values, are refused, naming the
    /// tensor. [`restore`](Self::restore) then puts it in place, once every other part of the
    /// state has been read too, so that a refused state changes nothing.
    pub fn read(&self, map: &mut TensorMap) -> Result<Restored> {
        let value = map.take(self.name, &self.shape)?;
        let velocity = map.take(&self.momentum_name, &self.shape)?;
        for (name, values) in [(self.name, &value), (self.momentum_name.as_str(), &velocity)] {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::bad_input(format!("state tensor '{name}' holds {} at index {i}", values[i])));
            }
        }
        Ok(Restored(SgdParam { value, velocity }))
    }

    /// Puts what [`read`](Self::read) returned in place and forgets a pending gradient.
    pub fn restore(&mut self, restored: Restored) {
        self.param = restored.0;
        self.pending = None;
    }

    /// The state of a loss whose only state is this parameter, as safetensors bytes.
    pub fn save_state(&self) -> Result<Vec<u8>> {
        save_tensors(&self.tensors())
    }

    /// Restores [`save_state`](Self::save_state)'s bytes, refusing any other tensor; a
    /// refused state changes nothing.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        let mut map = TensorMap::parse(bytes)?;
        let restored = self.read(&mut map)?;
        map.finish()?;
        self.restore(restored);
        Ok(())
    }
}

/// A parameter's saved values, read and checked, waiting for [`Trainable::restore`].
#[derive(Debug)]
pub struct Restored(SgdParam);

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context { embedding_dim: 2, num_classes: 1, seed: 0, base_lr: 0.1 }
    }

    #[test]
    fn steps_with_its_own_optimizer_and_scale() {
        let sgd = SgdConfig { lr: Some(1.0), momentum: 0.5, weight_decay: 0.0, nesterov: false };
        let mut p = Trainable::new("W", vec![2], vec![1.0, 1.0], sgd, &context());
        assert_eq!(p.learning_rate(), 1.0);
        p.set_gradient(vec![1.0, -1.0]);
        p.step(0.5); // v = g; θ − 0.5·v
        assert_eq!(p.value(), &[0.5, 1.5]);
        p.set_gradient(vec![1.0, -1.0]);
        p.step(0.5); // v = 0.5·v + g = 1.5·g
        assert_eq!(p.value(), &[-0.25, 2.25]);
        assert_eq!(p.momentum(), &[1.5, -1.5]);
        assert_eq!(p.pending_gradient(), None);
    }

    #[test]
    fn bad_states_are_refused_by_name() {
        let mut p = Trainable::new("proxies", vec![1, 2], vec![0.0; 2], SgdConfig::plain(), &context());
        let load = |p: &mut Trainable, tensors: &[(&str, &[usize], &[f32])]| {
            p.load_state(&save_tensors(tensors).unwrap()).unwrap_err().to_string()
        };
        let shape: &[usize] = &[1, 2];
        assert!(load(&mut p, &[("proxies", shape, &[1.0, 2.0])]).contains("proxies.momentum"));
        assert!(
            load(&mut p, &[("proxies", &[2, 1], &[1.0, 2.0]), ("proxies.momentum", shape, &[0.0; 2])])
                .contains("proxies")
        );
        let nan = load(&mut p, &[("proxies", shape, &[1.0, f32::NAN]), ("proxies.momentum", shape, &[0.0; 2])]);
        assert!(nan.contains("'proxies' holds NaN at index 1"), "{nan}");
        // An extra tensor refuses the whole state, and nothing changed.
        let extra = load(
            &mut p,
            &[("proxies", shape, &[1.0, 2.0]), ("proxies.momentum", shape, &[0.0; 2]), ("W", shape, &[0.0; 2])],
        );
        assert!(extra.contains("W"), "{extra}");
        assert_eq!(p.value(), &[0.0, 0.0]);
    }
}
