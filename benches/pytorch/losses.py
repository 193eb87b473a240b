"""Forward and backward of pytorch-metric-learning's losses on one batch, the reference for
`cargo bench -p dmlbench --bench losses` (harness/benches/losses.rs).

The batch is the same shape as the Rust benchmark's: n = 256 embeddings of d = 512, 64 classes
of 4 (labels 0,0,0,0,1,1,1,1,...), float32, no miner, each loss with its constructor defaults
and, for losses with parameters, 100 classes. Each loss runs `--warmup` untimed calls, then
`--repeats` timed calls of forward and backward (the gradients of the embeddings and of the
loss's own parameters; no optimiser step, as in the Rust benchmark), one after the other; the
median of the timed calls is reported, in milliseconds. One thread by default (`torch.set_num_threads`), as `taskset -c 0` gives the
Rust side.

    python benches/pytorch/losses.py                      # every loss, a table
    python benches/pytorch/losses.py --json pml_losses.json --threads 1
    python benches/pytorch/losses.py --only arcface proxy_anchor

Keys are dmlbench's plugin ids; a dmlbench loss without a PML class of the same function
(cross_entropy, center, spce) is left out. `snca` is PML's NCALoss with softmax_scale = 1/(2σ)
(σ = 0.05), the same function.
"""

import argparse
import json
import statistics
import time

import torch
from pytorch_metric_learning import losses

N, D, CLASSES_IN_BATCH, CLASSES = 256, 512, 64, 100


def plain(cls, **kwargs):
    return lambda: cls(**kwargs)


def with_classes(cls, **kwargs):
    return lambda: cls(num_classes=CLASSES, embedding_size=D, **kwargs)


# dmlbench id -> a constructor of the PML loss with its defaults.
LOSSES = {
    "contrastive": plain(losses.ContrastiveLoss),
    "triplet_margin": plain(losses.TripletMarginLoss),
    "multi_similarity": plain(losses.MultiSimilarityLoss),
    "snca": plain(losses.NCALoss, softmax_scale=1.0 / (2 * 0.05)),
    "circle": plain(losses.CircleLoss),
    "lifted_structure": plain(losses.LiftedStructureLoss),
    "generalized_lifted_structure": plain(losses.GeneralizedLiftedStructureLoss),
    "ntxent": plain(losses.NTXentLoss),
    "supcon": plain(losses.SupConLoss),
    "n_pairs": plain(losses.NPairsLoss),
    "proxy_nca": with_classes(losses.ProxyNCALoss),
    "proxy_anchor": with_classes(losses.ProxyAnchorLoss),
    "norm_softmax": with_classes(losses.NormalizedSoftmaxLoss),
    "cosface": with_classes(losses.CosFaceLoss),
    "arcface": with_classes(losses.ArcFaceLoss),
    "sub_center_arcface": with_classes(losses.SubCenterArcFaceLoss),
    "soft_triple": with_classes(losses.SoftTripleLoss),
    "margin": plain(losses.MarginLoss),
    "fast_ap": plain(losses.FastAPLoss),
}


def batch(seed):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(N, D, generator=generator)
    labels = torch.arange(N) // (N // CLASSES_IN_BATCH)
    return z, labels


def time_loss(make, warmup, repeats):
    loss_fn = make()
    z0, labels = batch(1)

    def call():
        z = z0.clone().requires_grad_(True)
        loss = loss_fn(z, labels)
        loss.backward()
        loss_fn.zero_grad(set_to_none=True)

    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="dmlbench ids to time")
    parser.add_argument("--json", help="also write {id: milliseconds} here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for name, make in LOSSES.items():
        if args.only and name not in args.only:
            continue
        results[name] = time_loss(make, args.warmup, args.repeats)
        print(f"{name:32s} {results[name]:8.2f} ms", flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"threads": args.threads, "n": N, "d": D, "ms": results}, out, indent=2)


if __name__ == "__main__":
    main()
