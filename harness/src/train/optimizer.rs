//! The network's optimiser, built from the experiment's `training.optimizer`.
//!
//! burn's SGD, AdamW and RMSprop do the updates; [`WeightsOnlyDecay`] adds weight decay to
//! weights only (tensors of rank ≥ 2: convolution and linear weights), never to biases and
//! normalisation parameters (rank 1), as Boudiaf et al.'s code does (`no_bias_decay`). For
//! SGD and RMSprop the decay is L2 (added to the gradient, as PyTorch's `weight_decay`); for
//! AdamW it is decoupled (w ← w − lr·λ·w before the update, as PyTorch's `AdamW`).
//!
//! Parameter ids are renumbered in visiting order ([`number_parameters`]) so that the
//! optimiser's state, which burn keys by parameter id, can be checkpointed in one process and
//! restored in another.

use dmlbench_models::burn;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, LearningRate, ModuleOptimizer, Optimizer, RmsPropConfig, SgdConfig};
use burn::prelude::*;

use crate::experiment::spec::OptimizerSpec;

/// Weight decay on weights only, around an optimiser built without any.
#[derive(Clone)]
pub struct WeightsOnlyDecay<O> {
    inner: O,
    weight_decay: f64,
    decoupled: bool,
}

impl<O: Optimizer> Optimizer for WeightsOnlyDecay<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let decays = D >= 2 && self.weight_decay > 0.0;
        if decays && self.decoupled {
            let decayed = tensor.clone().sub(tensor.mul_scalar(lr * self.weight_decay));
            self.inner.step(lr, decayed, grad, state)
        } else if decays {
            let grad = grad.add(tensor.clone().mul_scalar(self.weight_decay));
            self.inner.step(lr, tensor, grad, state)
        } else {
            self.inner.step(lr, tensor, grad, state)
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

/// The optimiser for `spec`. The learning rate is given at each step (base × schedule).
pub fn build(spec: &OptimizerSpec) -> ModuleOptimizer {
    match *spec {
        OptimizerSpec::Sgd { momentum, nesterov, weight_decay, .. } => {
            let momentum = (momentum > 0.0)
                .then(|| MomentumConfig::new().with_momentum(momentum).with_dampening(0.0).with_nesterov(nesterov));
            let inner = SgdConfig::new().with_momentum(momentum).build();
            ModuleOptimizer::from(WeightsOnlyDecay { inner, weight_decay, decoupled: false })
        }
        OptimizerSpec::AdamW { beta1, beta2, eps, weight_decay, .. } => {
            let inner = AdamWConfig::new()
                .with_beta_1(beta1 as f32)
                .with_beta_2(beta2 as f32)
                .with_epsilon(eps as f32)
                .with_weight_decay(0.0)
                .build();
            ModuleOptimizer::from(WeightsOnlyDecay { inner, weight_decay, decoupled: true })
        }
        OptimizerSpec::RmsProp { alpha, eps, momentum, weight_decay, .. } => {
            let inner = RmsPropConfig::new()
                .with_alpha(alpha as f32)
                .with_epsilon(eps as f32)
                .with_momentum(momentum as f32)
                .with_weight_decay(None)
                .build();
            ModuleOptimizer::from(WeightsOnlyDecay { inner, weight_decay, decoupled: false })
        }
    }
}

/// Gives every parameter of `module` the id of its position in visiting order (1, 2, ...),
/// so ids are the same in every process that builds the same architecture.
pub fn number_parameters<M: Module>(module: M) -> M {
    struct Numbering(u64);
    impl ModuleMapper for Numbering {
        fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.0 += 1;
            param.id = ParamId::from(self.0);
            param
        }
    }
    module.map(&mut Numbering(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmlbench_models::{Backbone, EmbeddingModel, ModelConfig};

    fn tiny() -> (Device, EmbeddingModel) {
        let device = Device::flex().autodiff();
        device.seed(1);
        let config = ModelConfig {
            backbone: Backbone::SmallCnn { channels: vec![2, 4] },
            embedding_dim: Some(3),
            ..ModelConfig::default()
        };
        (device.clone(), number_parameters(config.init(&device, 1).unwrap().0))
    }

    fn params(model: &EmbeddingModel) -> Vec<(usize, Vec<f32>)> {
        struct Collect(Vec<(usize, Vec<f32>)>);
        impl burn::module::ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push((D, param.val().into_data().try_to_vec::<f32>().unwrap()));
            }
        }
        let mut c = Collect(Vec::new());
        model.visit(&mut c);
        c.0
    }

    /// One step with a zero gradient: only weight decay moves parameters. Returns (rank,
    /// before, after) per trainable parameter.
    fn step_with_zero_gradient(spec: OptimizerSpec) -> Vec<(usize, Vec<f32>, Vec<f32>)> {
        let (device, model) = tiny();
        let images = vec![0.3f32; 2 * 3 * 8 * 8];
        let pass = model.forward_host(&device, &images, [2, 3, 8, 8]).unwrap();
        let grads = pass.backward(&[0.0; 6], &model).unwrap();
        let before = params(&model);
        let mut optimizer = build(&spec);
        let after = params(&optimizer.step(0.1, model, grads));
        before.into_iter().zip(after).map(|((rank, b), (_, a))| (rank, b, a)).collect()
    }

    fn assert_weights_only_decay(spec: OptimizerSpec) {
        let steps = step_with_zero_gradient(spec);
        assert!(steps.iter().any(|(rank, _, _)| *rank == 1) && steps.iter().any(|(rank, _, _)| *rank >= 2));
        for (rank, before, after) in steps {
            for (b, a) in before.iter().zip(&after) {
                // lr 0.1, λ 0.5: w ← w − 0.05 w = 0.95 w for weights; unchanged otherwise.
                let want = if rank >= 2 { b * 0.95 } else { *b };
                assert!((a - want).abs() <= 1e-6 * b.abs().max(1.0), "rank {rank}: {b} → {a}, want {want}");
            }
        }
    }

    #[test]
    fn sgd_decays_weights_but_not_biases_or_norms() {
        assert_weights_only_decay(OptimizerSpec::Sgd { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 0.5 });
    }

    #[test]
    fn adamw_decay_is_decoupled_and_weights_only() {
        assert_weights_only_decay(OptimizerSpec::AdamW {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.5,
        });
    }

    #[test]
    fn numbering_is_the_same_for_two_builds() {
        // Only trainable parameters: burn keeps its own ids for running statistics, which the
        // optimiser never sees.
        let ids = |m: &EmbeddingModel| {
            struct Ids(Vec<ParamId>);
            impl burn::module::ModuleVisitor for Ids {
                fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                    if param.is_require_grad() {
                        self.0.push(param.id);
                    }
                }
            }
            let mut v = Ids(Vec::new());
            m.visit(&mut v);
            v.0
        };
        let (_, a) = tiny();
        let (_, b) = tiny();
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(ids(&a)[0], ParamId::from(1));
    }
}
