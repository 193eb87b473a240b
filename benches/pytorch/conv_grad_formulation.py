"""Where LibTorch-backed dmlbench loses time against PyTorch: how convolution gradients are formed.

burn's LibTorch backend runs each convolution forward with LibTorch's own kernel, but for the
backward pass it uses burn's generic formulation, which any backend gets unless it overrides
it (burn-backend, `ops/modules/conv.rs`):

- the input gradient as a transposed convolution of the output gradient with the weights;
- the weight gradient as a *forward* convolution of the input with the output gradient, both
  with batch and channel dimensions swapped, stride and dilation exchanged.

PyTorch's autograd instead calls LibTorch's `convolution_backward`, whose kernels are made for
those two products. This script times the train step of `train_step.py` twice in PyTorch
itself: with PyTorch's convolution, and with a convolution whose backward is computed as burn
computes it. If the second runs at dmlbench's LibTorch speed, the gap is in that formulation,
not in dmlbench's loop, data path or host copies.

    python benches/pytorch/conv_grad_formulation.py --case resnet18 --threads 2
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import train_step
from models import build_model


class GenericBackwardConv2d(torch.autograd.Function):
    """conv2d whose gradients are formed as burn's generic backend forms them."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation)
        return F.conv2d(x, weight, None, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        grad_x = None
        if ctx.needs_input_grad[0]:
            # Output padding that restores the input size, as burn's `calculate_padding_out`.
            out_pad = [
                x.shape[2 + i]
                - ((grad.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[2 + i] - 1) + 1)
                for i in range(2)
            ]
            grad_x = F.conv_transpose2d(grad, weight, None, stride, padding, out_pad, 1, dilation)
        grad_w = None
        if ctx.needs_input_grad[1]:
            swapped = F.conv2d(x.transpose(0, 1), grad.transpose(0, 1), None, dilation, padding, stride)
            grad_w = swapped.transpose(0, 1)[:, :, : weight.shape[2], : weight.shape[3]]
        return grad_x, grad_w, None, None, None


def use_generic_backward(model):
    """Routes every bias-free Conv2d of `model` through GenericBackwardConv2d."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.bias is None and module.groups == 1:
            module.forward = (
                lambda x, m=module: GenericBackwardConv2d.apply(x, m.weight, m.stride, m.padding, m.dilation)
            )
    return model


def check_gradients():
    """The generic formulation gives PyTorch's gradients (so only its speed differs)."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, 13, 11, requires_grad=True)
    w = torch.randn(5, 4, 3, 3, requires_grad=True)
    for stride, padding in [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((2, 2), (3, 3))]:
        ref = F.conv2d(x, w, None, stride, padding)
        g = torch.randn_like(ref)
        gx, gw = torch.autograd.grad(ref, (x, w), g)
        out = GenericBackwardConv2d.apply(x, w, stride, padding, (1, 1))
        hx, hw = torch.autograd.grad(out, (x, w), g)
        assert torch.allclose(gx, hx, atol=1e-4) and torch.allclose(gw, hw, atol=1e-4), (stride, padding)


def rate(case, generic, args):
    torch.manual_seed(0)
    model = build_model(case["backbone"], frozen_bn=case["frozen_bn"], embedding_dim=128, normalize=True)
    if generic:
        use_generic_backward(model)
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    images = torch.randn(case["batch"], 3, case["size"], case["size"])
    grad = torch.randn(case["batch"], 128)
    seconds = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        embeddings = model(images.clone())
        embeddings.backward(grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= args.warmup:
            seconds.append(time.perf_counter() - start)
    return case["batch"] / statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=list(train_step.CASES), default="resnet18")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    check_gradients()
    case = train_step.CASES[args.case]
    native = rate(case, False, args)
    generic = rate(case, True, args)
    print(f"{case['name']}: PyTorch's conv backward {native:.2f} img/s, burn's generic formulation "
          f"{generic:.2f} img/s, ratio {generic / native:.2f}")


if __name__ == "__main__":
    main()
