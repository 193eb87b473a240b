"""One training step in PyTorch, the reference for `cargo bench -p dmlbench-models --bench train_step`.

Mirrors `models/benches/train_step.rs` (and the step of `models/src/host.rs`): the same three
cases, the same models (see models.py), the same step:

1. host images (a float32 array in host memory) are copied into a tensor on the device;
2. forward in training mode;
3. the embeddings are copied to host memory, where dmlbench hands them to the loss plugin
   (a real copy: on the CPU `.cpu().numpy()` alone would be a view);
4. backward from a fixed host gradient dL/dZ (copied to the device), `embeddings.backward(G)`,
   which gives the same parameter gradients as dmlbench's `sum(Z * G).backward()`;
5. plain SGD (lr 0.01, no momentum, no weight decay), then the gradients are cleared.

Cases: the small CNN (default widths [32, 64, 128, 256], trainable BN) at 64x64, batch 64;
ResNet-18 with frozen BN at 224x224, batch 32; ResNet-50 with frozen BN at 224x224, batch
16. Every head projects to 128-d and L2-normalises. Inputs are standard-normal values from a
fixed torch seed.

Each case runs `--warmup` untimed steps, then `--steps` timed ones; it reports the median
and the best images per second over the timed steps. On CUDA the device is synchronised
before each clock reading and the peak allocated memory is reported.

    python benches/pytorch/train_step.py --case all --threads 2
    python benches/pytorch/train_step.py --case resnet50 --device cuda:0 --json step.json
"""

import argparse
import copy
import json
import platform
import resource
import statistics
import sys
import time

import numpy as np
import torch

from models import build_model

CASES = {
    "small_cnn": dict(name="small_cnn_b64_64px", backbone="small_cnn", frozen_bn=False, batch=64, size=64),
    "resnet18": dict(name="resnet18_b32_224px", backbone="resnet18", frozen_bn=True, batch=32, size=224),
    "resnet50": dict(name="resnet50_b16_224px", backbone="resnet50", frozen_bn=True, batch=16, size=224),
}
EMBEDDING_DIM = 128
LEARNING_RATE = 0.01


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=list(CASES) + ["all"], default="all")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--steps and --threads must be at least 1, --warmup at least 0")
    return args


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device, threads):
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": threads,
        "cpu": cpu_model(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(case, args, device):
    torch.manual_seed(args.seed)
    model = build_model(case["backbone"], frozen_bn=case["frozen_bn"], embedding_dim=EMBEDDING_DIM, normalize=True)
    model.to(device).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)

    batch, size = case["batch"], case["size"]
    generator = torch.Generator().manual_seed(args.seed)
    images_host = torch.randn(batch, 3, size, size, generator=generator).numpy()
    grad_host = torch.randn(batch, EMBEDDING_DIM, generator=generator).numpy()

    def step():
        images = torch.tensor(images_host, device=device)
        embeddings = model(images)
        host = embeddings.detach().to("cpu", copy=True).numpy()
        # The loss plugin would compute dL/dZ from `host` here.
        grad = torch.tensor(grad_host, device=device)
        embeddings.backward(grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return host

    for _ in range(args.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # Every timed step starts from the same weights, as in `cargo bench --bench train_step`:
    # many steps along one fixed gradient would drive the weights where gradients underflow
    # into subnormal numbers, which slows each framework down differently.
    initial = copy.deepcopy(model.state_dict())
    seconds = []
    for _ in range(args.steps):
        model.load_state_dict(initial)
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)

    rates = [batch / s for s in seconds]
    result = {
        "case": case["name"],
        "backbone": case["backbone"],
        "frozen_bn": case["frozen_bn"],
        "batch": batch,
        "size": size,
        "steps": args.steps,
        "warmup": args.warmup,
        "median_images_per_second": statistics.median(rates),
        "best_images_per_second": max(rates),
        "median_step_seconds": statistics.median(seconds),
        "step_seconds": seconds,
        # Process-wide peak resident memory so far (ru_maxrss is in KiB on Linux).
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        result["peak_device_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def print_table(results, device):
    memory = "peak GPU MiB" if device.type == "cuda" else "peak RSS MiB"
    header = f"{'case':<20} {'batch':>5} {'size':>5} {'median img/s':>13} {'best img/s':>11} {memory:>13}"
    print(header)
    print("-" * len(header))
    for r in results:
        mem = r.get("peak_device_mib", r["peak_rss_mib"])
        print(
            f"{r['case']:<20} {r['batch']:>5} {r['size']:>5} {r['median_images_per_second']:>13.2f}"
            f" {r['best_images_per_second']:>11.2f} {mem:>13.0f}"
        )


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"error: --device {args.device}: this PyTorch has no usable CUDA device")
    env = environment(device, args.threads)
    print(json.dumps({"environment": env}), flush=True)

    names = list(CASES) if args.case == "all" else [args.case]
    results = []
    for name in names:
        result = run_case(CASES[name], args, device)
        results.append(result)
        print(json.dumps(result), flush=True)

    print()
    print_table(results, device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
