"""pytorch-metric-learning's CrossBatchMemory over a few steps: the reference of
harness/tests/cross_batch_memory.rs, which replays the same steps through dmlbench's memory and
plugins.

Three batches of 8 embeddings of size 4 (float64) go through a memory of 12, so the third step
wraps around. For each (loss, miner) below, one fresh CrossBatchMemory sees the three batches in
order; each step records the loss and its gradient with respect to that batch's embeddings.
`direct` calls a few losses and miners with the first batch and `ref_emb` = the second (no
memory, so nothing is removed), as `dmlbench loss/mine --ref-embeddings` does. The output, a
JSON file, holds the inputs too, so the Rust tests need no random generator of ours.

    python benches/pytorch/cross_batch_memory.py harness/tests/fixtures/cross_batch_memory.json
"""

import json
import sys

import torch
from pytorch_metric_learning import losses, miners

MEMORY, N, D, STEPS = 12, 8, 4, 3

# Keys are dmlbench plugin ids; every plugin runs with its defaults, which are PML's.
CASES = [
    ("contrastive", None, lambda: losses.ContrastiveLoss(), None),
    ("triplet_margin", None, lambda: losses.TripletMarginLoss(), None),
    ("multi_similarity", None, lambda: losses.MultiSimilarityLoss(), None),
    ("ntxent", None, lambda: losses.NTXentLoss(), None),
    ("supcon", None, lambda: losses.SupConLoss(), None),
    ("contrastive", "multi_similarity", lambda: losses.ContrastiveLoss(), lambda: miners.MultiSimilarityMiner()),
    ("triplet_margin", "batch_hard", lambda: losses.TripletMarginLoss(), lambda: miners.BatchHardMiner()),
    ("multi_similarity", "pair_margin", lambda: losses.MultiSimilarityLoss(), lambda: miners.PairMarginMiner()),
]


def batches():
    generator = torch.Generator().manual_seed(2020)
    out = []
    for _ in range(STEPS):
        embeddings = torch.randn(N, D, generator=generator, dtype=torch.float64)
        # Four classes, two rows each, in a shuffled order.
        labels = torch.arange(4).repeat_interleave(2)[torch.randperm(N, generator=generator)]
        out.append((embeddings, labels))
    return out


def main():
    inputs = batches()
    cases = []
    for loss_id, miner_id, make_loss, make_miner in CASES:
        memory = losses.CrossBatchMemory(
            make_loss(), D, memory_size=MEMORY, miner=make_miner() if make_miner else None
        )
        steps = []
        for embeddings, labels in inputs:
            z = embeddings.clone().requires_grad_(True)
            loss = memory(z, labels)
            loss.backward()
            steps.append({"loss": loss.item(), "grad": z.grad.tolist()})
        cases.append({"loss": loss_id, "miner": miner_id, "steps": steps})
    (z0, l0), (z1, l1) = inputs[0], inputs[1]
    direct = []
    for loss_id, make_loss in [("contrastive", losses.ContrastiveLoss), ("supcon", losses.SupConLoss)]:
        z = z0.clone().requires_grad_(True)
        loss = make_loss()(z, l0, ref_emb=z1, ref_labels=l1)
        loss.backward()
        direct.append({"loss": loss_id, "value": loss.item(), "grad": z.grad.tolist()})
    a, p, n = miners.BatchHardMiner()(z0, l0, z1, l1)
    direct_mined = {"miner": "batch_hard", "a": a.tolist(), "p": p.tolist(), "n": n.tolist()}
    batches_json = [{"embeddings": e.tolist(), "labels": l.tolist()} for e, l in inputs]
    document = {
        "source": "pytorch-metric-learning CrossBatchMemory, benches/pytorch/cross_batch_memory.py",
        "memory_size": MEMORY,
        "batches": batches_json,
        "cases": cases,
        "direct": direct,
        "direct_mined": direct_mined,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(document, f, indent=1)


if __name__ == "__main__":
    main()
