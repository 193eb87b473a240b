"""One experiment cell trained and evaluated with PyTorch and pytorch-metric-learning (PML).

The end-to-end reference for `dmlbench run`: the same data files, model, sampler, optimiser,
schedule, loss and evaluation as one cell of an experiment file, written the way a PML user
writes a training script today (torchvision transforms, a DataLoader with worker processes,
PML's losses, miners, sampler and AccuracyCalculator). It reports the wall time of every
epoch (training and evaluation), the time spent importing the libraries, and the time of the
whole process, from its start (interpreter start-up included) to the end of the last epoch.

Recipes (`--recipe`):

- `default`: the `contrastive+batch_hard` cell of experiments/default.ron. Synthetic
  CUB-format data (data/synthetic-cub), resize 56 / crop 48 without colour jitter, the small
  CNN with widths [32, 64, 128] and trainable BN, a 64-d embedding that is not normalised,
  PML's MPerClassSampler (m = 4, batch 32), SGD lr 0.1 with Nesterov momentum 0.9 and weight
  decay 5e-4 on weights only, a warm-up cosine schedule (10 iterations), 15 epochs, PML's
  ContrastiveLoss (pos_margin 0, neg_margin 1, Euclidean on normalised embeddings) with
  BatchHardMiner. Resized training images are kept in memory (`cache_images: true`).
- `paper-cub`: experiments/paper-cub.ron (Boudiaf et al., ECCV 2020): ResNet-50 with
  frozen BN, its 2048-d pooled features as the embedding, resize 256 / crop 224 with colour
  jitter, random batches of 128, SGD lr 0.02 without momentum, weight decay 5e-4 on weights
  only, warm-up cosine over 100 iterations, 30 epochs, cross-entropy with label smoothing 0.1
  and dropout 0.5 on the input of a zero-initialised linear classifier trained by its own SGD,
  as dmlbench's `cross_entropy` plugin (plugins/losses/cross_entropy/src/lib.rs and
  plugins/sdk/src/classifier.rs). Random initialisation unless `--weights` names torchvision's
  ResNet-50 `.pth`.

What mirrors which Rust file:

- splits: datasets/src/cub.rs (classes 1..C/2 train, the rest test, labels in class-id order);
- transforms: datasets/src/transform.rs (shorter side resized, RandomResizedCrop scale
  (0.16, 1), ratio (3/4, 4/3), flip 1/2, colour jitter (0.25, 0.25, 0.25, 0) after the crop;
  evaluation: resize, centre crop; ImageNet mean/std);
- epoch length: harness/src/train/sampler.rs (ceil(n / batch_size) batches with either
  sampler; a batch of fewer than 2 images is skipped, as in harness/src/train/cell.rs);
- optimiser: harness/src/train/optimizer.rs (decay only on tensors of rank >= 2);
- schedule: harness/src/train/schedule.rs (factor min((i + 1) / w, (1 + cos(pi i / T)) / 2)
  at iteration i of T, set before each step);
- evaluation: harness/src/eval (precision@1, Recall@K, R-precision, MAP@R, NMI, AMI on the
  test split, every image queried against the others, cosine distance on L2-normalised
  embeddings), after every epoch and once before training;
- model: models.py (models/src).

    python benches/pytorch/pml_cell.py --recipe default --root data/synthetic-cub
    python benches/pytorch/pml_cell.py --recipe paper-cub --root data/CUB_200_2011 \\
        --weights weights/resnet50-0676ba61.pth --device cuda:0 --workers 8 --json cub.json
"""

import time

_SCRIPT_START = time.perf_counter()


def _process_age():
    """Seconds since this process started (Linux), or None where /proc is missing."""
    try:
        import os

        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        with open("/proc/self/stat") as f:
            # Field 22, counted after the parenthesised command name, which may hold spaces.
            fields = f.read().rsplit(")", 1)[1].split()
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# Interpreter start-up before this script's first line, to add to the script's own time.
_STARTUP_SECONDS = _process_age()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402

_IMPORT_START = time.perf_counter()
import faiss  # noqa: E402,F401  (AccuracyCalculator's kNN search and k-means)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from PIL import Image  # noqa: E402
from pytorch_metric_learning import losses, miners, samplers  # noqa: E402
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from models import build_model  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _IMPORT_START

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RECIPES = {
    "default": dict(
        experiment="experiments/default.ron",
        cell="contrastive+batch_hard",
        root="data/synthetic-cub",
        resize=56,
        crop=48,
        jitter=False,
        cache_images=True,
        backbone="small_cnn",
        channels=[32, 64, 128],
        weights=None,
        frozen_bn=False,
        embedding_dim=64,
        normalize=False,
        bn_head=False,
        dropout=0.0,
        epochs=15,
        batch_size=32,
        m_per_class=4,
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        warmup_iterations=10,
        loss="contrastive",
        miner="batch_hard",
        eval_batch_size=128,
        k=[1, 2, 4, 8],
    ),
    "paper-cub": dict(
        experiment="experiments/paper-cub.ron",
        cell="cross_entropy",
        root="data/CUB_200_2011",
        resize=256,
        crop=224,
        jitter=True,
        cache_images=False,
        backbone="resnet50",
        channels=None,
        weights=None,
        frozen_bn=True,
        embedding_dim=None,
        normalize=False,
        bn_head=False,
        dropout=0.0,
        epochs=30,
        batch_size=128,
        m_per_class=None,
        lr=0.02,
        momentum=0.0,
        nesterov=False,
        weight_decay=5e-4,
        warmup_iterations=100,
        loss="cross_entropy",
        label_smoothing=0.1,
        classifier_dropout=0.5,
        # The plugin's own SGD: its lr defaults to the network's; momentum 0, decay 5e-4 on W.
        classifier_momentum=0.0,
        classifier_nesterov=False,
        classifier_weight_decay=5e-4,
        miner=None,
        eval_batch_size=256,
        k=[1, 2, 4, 8],
    ),
}


# ----------------------------------------------------------------------------- data


def read_lines(path):
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def load_cub(root):
    """The class-disjoint splits of a CUB-format dataset: (train, test), each a list of
    (image path, label) in images.txt order, labels 0..C-1 in class-id order."""
    classes = sorted(int(fields[0]) for fields in read_lines(os.path.join(root, "classes.txt")))
    if classes != list(range(1, len(classes) + 1)):
        sys.exit(f"error: {root}/classes.txt: class ids must run from 1 to {len(classes)}")
    labels = {int(image): int(cls) for image, cls in read_lines(os.path.join(root, "image_class_labels.txt"))}
    train_last = len(classes) // 2
    splits = {"train": [], "test": []}
    for fields in read_lines(os.path.join(root, "images.txt")):
        image_id, path = int(fields[0]), " ".join(fields[1:])
        cls = labels[image_id]
        splits["train" if cls <= train_last else "test"].append((os.path.join(root, "images", path), cls))
    result = []
    for name in ("train", "test"):
        ids = sorted({cls for _, cls in splits[name]})
        relabel = {cls: label for label, cls in enumerate(ids)}
        result.append([(path, relabel[cls]) for path, cls in splits[name]])
    return result


def train_transform(crop, jitter):
    steps = [
        T.RandomResizedCrop(crop, scale=(0.16, 1.0), ratio=(3 / 4, 4 / 3)),
        T.RandomHorizontalFlip(0.5),
        T.ToTensor(),
    ]
    if jitter:
        # On the crop, in [0, 1] tensors, as dmlbench applies it.
        steps.append(T.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.0))
    steps.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return T.Compose(steps)


def eval_transform(crop):
    return T.Compose([T.CenterCrop(crop), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class ImageList(Dataset):
    """Images and labels: decode (RGB), resize the shorter side, then `transform`.

    With `cache` the resized images are kept after `prepare`, and only `transform` runs per
    epoch (dmlbench's `cache_images`).
    """

    def __init__(self, items, resize, transform, cache=False):
        self.items = items
        self.resize = T.Resize(resize)
        self.transform = transform
        self.cache = cache
        self.prepared = None

    def __len__(self):
        return len(self.items)

    def labels(self):
        return [label for _, label in self.items]

    def resized(self, index):
        if self.prepared is not None:
            return self.prepared[index]
        with Image.open(self.items[index][0]) as image:
            return self.resize(image.convert("RGB"))

    def __getitem__(self, index):
        return self.transform(self.resized(index)), self.items[index][1]

    def prepare(self, workers):
        """Decodes and resizes every image once, in `workers` processes, when caching."""
        if not self.cache or self.prepared is not None:
            return
        loader = DataLoader(_Resized(self), batch_size=32, num_workers=workers, collate_fn=_as_list)
        self.prepared = [image for batch in loader for image in batch]


class _Resized(Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images.resized(index)


def _as_list(batch):
    return batch


# ----------------------------------------------------------------------------- training


def lr_factor(iteration, total, warmup):
    """harness/src/train/schedule.rs, WarmupCosine."""
    warm = (iteration + 1) / max(warmup, 1)
    progress = min(iteration / max(total, 1), 1.0)
    return min(warm, 0.5 * (1.0 + math.cos(math.pi * progress)))


def sgd_weights_only_decay(parameters, lr, momentum, nesterov, weight_decay):
    """SGD with weight decay on weights (rank >= 2) only, never on biases and norms."""
    parameters = [p for p in parameters if p.requires_grad]
    groups = [
        {"params": [p for p in parameters if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, dampening=0.0, nesterov=nesterov)


def set_lr_factor(optimizers, factor):
    """Every parameter group's learning rate to its base rate times `factor`."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor


def make_train_loader(train_set, recipe, batches_per_epoch, generator, options):
    """The training batches: PML's MPerClassSampler or a shuffle, ceil(n / batch) per epoch."""
    batch_size = recipe["batch_size"]
    if recipe["m_per_class"] is None:
        return DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator, **options)
    sampler = samplers.MPerClassSampler(
        train_set.labels(),
        m=recipe["m_per_class"],
        batch_size=batch_size,
        # PML rounds this down to whole batches; dmlbench draws ceil(n / batch_size) of them.
        length_before_new_iter=batches_per_epoch * batch_size,
    )
    return DataLoader(train_set, batch_size=batch_size, sampler=sampler, generator=generator, **options)


class SmoothedCrossEntropy(nn.Module):
    """dmlbench's `cross_entropy` plugin: dropout, then a zero-initialised linear classifier,
    and the cross-entropy with a target of 1 - eps on the label and eps / (C - 1) on every
    other class (not PyTorch's `label_smoothing`, which puts eps / C everywhere)."""

    def __init__(self, dim, classes, smoothing, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, classes)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)
        self.smoothing = smoothing

    def forward(self, embeddings, labels):
        log_probs = F.log_softmax(self.classifier(self.dropout(embeddings)), dim=1)
        classes = log_probs.shape[1]
        off = self.smoothing / (classes - 1) if classes > 1 else 0.0
        target = torch.full_like(log_probs, off)
        target.scatter_(1, labels[:, None], 1.0 - self.smoothing if classes > 1 else 1.0)
        return -(target * log_probs).sum(dim=1).mean()


class PairLoss(nn.Module):
    """A PML loss, fed by a PML miner when there is one."""

    def __init__(self, loss, miner=None):
        super().__init__()
        self.loss = loss
        self.miner = miner

    def forward(self, embeddings, labels):
        tuples = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, tuples)


def build_loss(recipe, embedding_dim, num_classes):
    if recipe["loss"] == "contrastive":
        # PML's defaults: LpDistance(p=2, normalize_embeddings=True), as dmlbench's plugins.
        miner = miners.BatchHardMiner() if recipe["miner"] == "batch_hard" else None
        return PairLoss(losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0), miner)
    if recipe["loss"] == "cross_entropy":
        return SmoothedCrossEntropy(embedding_dim, num_classes, recipe["label_smoothing"], recipe["classifier_dropout"])
    raise ValueError(f"unknown loss {recipe['loss']}")


# ----------------------------------------------------------------------------- evaluation


class RetrievalAccuracy(AccuracyCalculator):
    """PML's AccuracyCalculator plus Recall@K for the dataset's K values.

    Recall@K: share of queries with a same-class item among their K nearest neighbours;
    queries whose class has no other member are left out, as for PML's own metrics.
    """

    def __init__(self, recall_k, **kwargs):
        self.recall_k = sorted(set(recall_k))
        for k in self.recall_k:
            # AccuracyCalculator finds its metrics by the `calculate_` prefix.
            setattr(self, f"calculate_recall_at_{k}", functools.partial(self.recall_at, k))
        super().__init__(**kwargs)

    def requires_knn(self):
        return super().requires_knn() + [f"recall_at_{k}" for k in self.recall_k]

    @staticmethod
    def recall_at(k, knn_labels, query_labels, not_lone_query_mask, **kwargs):
        if not torch.any(not_lone_query_mask):
            return float("nan")
        knn_labels = knn_labels[not_lone_query_mask]
        query_labels = query_labels[not_lone_query_mask]
        hits = torch.any(knn_labels[:, :k] == query_labels[:, None], dim=1)
        return hits.double().mean().item()


def accuracy_calculator(recall_k, labels):
    # Enough neighbours for R-precision and MAP@R (R is up to the largest class size minus
    # one) and for the largest K: k is the largest class size or K, whichever is larger.
    largest_class = max(Counter(labels).values())
    include = ["precision_at_1", "r_precision", "mean_average_precision_at_r", "NMI", "AMI"]
    include += [f"recall_at_{k}" for k in sorted(set(recall_k))]
    return RetrievalAccuracy(
        recall_k,
        include=tuple(include),
        k=max(largest_class, max(recall_k)),
        device=torch.device("cpu"),
    )


@torch.no_grad()
def embed(model, loader, device):
    model.eval()
    chunks = []
    for images, _ in loader:
        chunks.append(model(images.to(device, non_blocking=True)).float().cpu())
    model.train()
    return torch.cat(chunks)


def evaluate(model, loader, labels, calculator, device):
    start = time.perf_counter()
    embeddings = embed(model, loader, device)
    embed_seconds = time.perf_counter() - start
    if not torch.isfinite(embeddings).all():
        sys.exit("error: the model produced non-finite test embeddings")
    # AccuracyCalculator measures Euclidean distances on the embeddings exactly as given,
    # while dmlbench ranks by cosine distance on L2-normalised embeddings. Normalise first, or
    # a model with `normalize: false` (both recipes here) is scored on another distance.
    embeddings = F.normalize(embeddings, p=2.0, dim=1)
    labels = torch.as_tensor(labels)
    raw = calculator.get_accuracy(embeddings, labels, embeddings, labels, ref_includes_query=True)
    metrics = {
        "recall_at_k": {str(k): raw[f"recall_at_{k}"] for k in calculator.recall_k},
        "precision_at_1": raw["precision_at_1"],
        "r_precision": raw["r_precision"],
        "map_at_r": raw["mean_average_precision_at_r"],
        "nmi": raw["NMI"],
        "ami": raw["AMI"],
    }
    seconds = time.perf_counter() - start
    return metrics, {"eval_seconds": seconds, "embed_seconds": embed_seconds, "metric_seconds": seconds - embed_seconds}


# ----------------------------------------------------------------------------- the cell


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=list(RECIPES), default="default")
    parser.add_argument("--root", help="dataset directory, CUB format (default: the recipe's)")
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--weights", help="torchvision ResNet .pth for the backbone (paper-cub)")
    parser.add_argument(
        "--cache-images", action=argparse.BooleanOptionalAction, default=None,
        help="keep resized training images in memory (default: the recipe's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    parser.add_argument("--json", metavar="PATH", help="write the per-epoch results to this file")
    args = parser.parse_args(argv)
    recipe = dict(RECIPES[args.recipe])
    for key in ("root", "epochs", "batch_size", "weights", "cache_images"):
        value = getattr(args, key)
        if value is not None:
            recipe[key] = value
    if recipe["epochs"] < 1 or recipe["batch_size"] < 2 or args.threads < 1 or args.workers < 0:
        parser.error("--epochs must be at least 1, --batch-size at least 2, --threads at least 1")
    m = recipe["m_per_class"]
    if m is not None and recipe["batch_size"] % m != 0:
        parser.error(f"--batch-size {recipe['batch_size']} is not divisible by the sampler's m = {m}")
    if recipe["weights"] is not None and recipe["backbone"] == "small_cnn":
        parser.error("--weights applies to the ResNet backbones only")
    return args, recipe


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)  # PML's MPerClassSampler draws from numpy's global generator
    torch.manual_seed(seed)


def worker_peak_rss_mib():
    """Peak resident memory of each live child process (the DataLoader workers), in MiB.

    Forked workers share pages with the main process, so these overlap with its figure.
    """
    me, peaks = os.getpid(), []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return peaks
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != me:
                    continue
            with open(f"/proc/{entry}/status") as f:
                peaks += [int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")]
        except (OSError, ValueError, IndexError):
            continue
    return peaks


def peak_memory(device):
    memory = {
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_rss_mib": worker_peak_rss_mib(),
    }
    if device.type == "cuda":
        memory["peak_device_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return memory


def environment(args, device):
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import pytorch_metric_learning
    import torchvision

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "faiss": faiss.__version__,
        "cpu": cpu,
        "threads": args.threads,
        "workers": args.workers,
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def format_metrics(m):
    return f"R@1 {100 * m['recall_at_k']['1']:5.1f}  MAP@R {100 * m['map_at_r']:5.1f}  NMI {100 * m['nmi']:5.1f}"


def main(argv=None):
    args, recipe = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"error: --device {args.device}: this PyTorch has no usable CUDA device")
    seed_everything(args.seed)
    setup_start = time.perf_counter()

    train_items, test_items = load_cub(recipe["root"])
    train_set = ImageList(train_items, recipe["resize"], train_transform(recipe["crop"], recipe["jitter"]), recipe["cache_images"])
    test_set = ImageList(test_items, recipe["resize"], eval_transform(recipe["crop"]))
    train_labels, test_labels = train_set.labels(), test_set.labels()
    num_classes = len(set(train_labels))
    batch_size = recipe["batch_size"]
    batches_per_epoch = math.ceil(len(train_set) / batch_size)
    total_iterations = recipe["epochs"] * batches_per_epoch

    model = build_model(
        recipe["backbone"],
        frozen_bn=recipe["frozen_bn"],
        embedding_dim=recipe["embedding_dim"],
        normalize=recipe["normalize"],
        bn_head=recipe["bn_head"],
        dropout=recipe["dropout"],
        channels=recipe["channels"],
    )
    if recipe["weights"]:
        ignored = model.backbone.load_torchvision_weights(recipe["weights"])
        print(f"loaded {recipe['weights']} (ignored: {', '.join(ignored) or 'nothing'})", file=sys.stderr)
    model.to(device).train()
    criterion = build_loss(recipe, model.embedding_size, num_classes).to(device).train()

    optimizers = [
        sgd_weights_only_decay(model.parameters(), recipe["lr"], recipe["momentum"], recipe["nesterov"], recipe["weight_decay"])
    ]
    if recipe["loss"] == "cross_entropy":
        optimizers.append(
            sgd_weights_only_decay(
                criterion.parameters(),
                recipe["lr"],
                recipe["classifier_momentum"],
                recipe["classifier_nesterov"],
                recipe["classifier_weight_decay"],
            )
        )
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["base_lr"] = group["lr"]

    pin = device.type == "cuda"
    loader_seed = torch.Generator().manual_seed(args.seed)
    loader_options = dict(num_workers=args.workers, pin_memory=pin, persistent_workers=args.workers > 0)
    test_loader = DataLoader(test_set, batch_size=recipe["eval_batch_size"], shuffle=False, **loader_options)
    calculator = accuracy_calculator(recipe["k"], test_labels)
    setup_seconds = time.perf_counter() - setup_start

    print(
        f"{recipe['experiment']} [{recipe['cell']}] seed {args.seed}: {len(train_set)} training images "
        f"({num_classes} classes), {len(test_set)} test images, {recipe['epochs']} epochs of "
        f"{batches_per_epoch} batches of {batch_size}, {args.device}, {args.threads} threads, {args.workers} workers",
        flush=True,
    )
    initial_test, initial_timing = evaluate(model, test_loader, test_labels, calculator, device)
    print(f"epoch  0: {format_metrics(initial_test)}  eval {initial_timing['eval_seconds']:.1f} s", flush=True)

    train_loader = None
    iteration = 0
    epochs = []
    for epoch in range(recipe["epochs"]):
        epoch_start = time.perf_counter()
        if train_loader is None:
            # Created in the first epoch, after the resize cache is filled, so the persistent
            # workers start with it (dmlbench fills its cache during the first epoch, too).
            train_set.prepare(args.workers)
            train_loader = make_train_loader(train_set, recipe, batches_per_epoch, loader_seed, loader_options)

        loss_sum, images, steps = 0.0, 0, 0
        for batch_images, batch_labels in train_loader:
            if len(batch_labels) < 2:
                continue  # no pair to form, no batch statistics to take
            batch_images = batch_images.to(device, non_blocking=True)
            batch_labels = batch_labels.to(device, non_blocking=True)
            set_lr_factor(optimizers, lr_factor(iteration, total_iterations, recipe["warmup_iterations"]))
            embeddings = model(batch_images)
            loss = criterion(embeddings, batch_labels)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            value = loss.item()
            if not math.isfinite(value):
                sys.exit(f"error: epoch {epoch + 1}, batch {steps + 1}: the loss is {value}")
            loss_sum += value
            images += len(batch_labels)
            steps += 1
            iteration += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - epoch_start

        test, timing = evaluate(model, test_loader, test_labels, calculator, device)
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(steps, 1),
            "steps": steps,
            "images": images,
            "images_per_second": images / train_seconds,
            "train_seconds": train_seconds,
            **timing,
            "total_seconds": time.perf_counter() - epoch_start,
            "test": test,
        }
        epochs.append(record)
        print(
            f"epoch {epoch + 1:2d}: loss {record['loss']:.4f}  {format_metrics(test)}  "
            f"train {train_seconds:.1f} s ({record['images_per_second']:.0f} img/s)  eval {timing['eval_seconds']:.1f} s",
            flush=True,
        )

    script_seconds = time.perf_counter() - _SCRIPT_START
    result = {
        "recipe": args.recipe,
        "experiment": recipe["experiment"],
        "cell": recipe["cell"],
        "seed": args.seed,
        "config": {k: v for k, v in recipe.items() if k not in ("experiment", "cell")},
        "dataset": {
            "root": recipe["root"],
            "train_images": len(train_set),
            "train_classes": num_classes,
            "test_images": len(test_set),
            "test_classes": len(set(test_labels)),
        },
        "environment": environment(args, device),
        "import_seconds": IMPORT_SECONDS,
        "setup_seconds": setup_seconds,
        "initial_test": initial_test,
        "initial_eval_seconds": initial_timing["eval_seconds"],
        "epochs": epochs,
        "final_test": epochs[-1]["test"],
        "mean_epoch_seconds": sum(e["total_seconds"] for e in epochs) / len(epochs),
        "mean_images_per_second": sum(e["images_per_second"] for e in epochs) / len(epochs),
        "script_seconds": script_seconds,
        # From the start of the process, interpreter start-up included.
        "process_seconds": script_seconds + (_STARTUP_SECONDS or 0.0),
        **peak_memory(device),
    }
    print_summary(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    # The persistent workers are shut down by the interpreter; the process time above stops here.
    return result


def print_summary(result):
    print()
    header = f"{'epoch':>5} {'loss':>8} {'train s':>8} {'eval s':>7} {'total s':>8} {'img/s':>7} {'R@1':>6} {'MAP@R':>6} {'NMI':>6}"
    print(header)
    print("-" * len(header))
    init = result["initial_test"]
    print(
        f"{0:>5} {'':>8} {'':>8} {result['initial_eval_seconds']:>7.2f} {'':>8} {'':>7}"
        f" {100 * init['recall_at_k']['1']:>6.1f} {100 * init['map_at_r']:>6.1f} {100 * init['nmi']:>6.1f}"
    )
    for e in result["epochs"]:
        t = e["test"]
        print(
            f"{e['epoch']:>5} {e['loss']:>8.4f} {e['train_seconds']:>8.2f} {e['eval_seconds']:>7.2f} {e['total_seconds']:>8.2f}"
            f" {e['images_per_second']:>7.1f} {100 * t['recall_at_k']['1']:>6.1f} {100 * t['map_at_r']:>6.1f} {100 * t['nmi']:>6.1f}"
        )
    print()
    print(
        f"mean s/epoch {result['mean_epoch_seconds']:.2f}, mean img/s {result['mean_images_per_second']:.1f}, "
        f"imports {result['import_seconds']:.2f} s, whole process {result['process_seconds']:.2f} s, "
        f"peak RSS {result['peak_rss_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
