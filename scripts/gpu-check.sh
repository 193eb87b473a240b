#!/usr/bin/env bash
# The GPU check: dmlbench's LibTorch backend on a CUDA GPU, against PyTorch on the same GPU,
# in one go, with a Markdown report. Made for a GPU machine that has PyTorch but no network and
# no Rust toolchain, so it has two halves:
#
#   scripts/gpu-check.sh prepare [--torch VERSION]
#       On a machine with Rust and PyPI (no GPU needed): builds dmlbench with `--features tch`
#       against PyPI's torch VERSION (default 2.9.0; use the GPU machine's version, e.g. 2.11.0,
#       whose PyPI wheel is the same CUDA build), plus the flex/LibTorch parity test, the
#       train-step benchmark and every plugin library, strips them, and puts them in
#       target/gpu-check/ (about 55 MB). Copy the checkout with that folder to the GPU machine.
#
#   scripts/gpu-check.sh run [--python PYTHON] [--gpu N | --cpu] [--out DIR]
#       On the GPU machine, from the checkout's root: finds LibTorch in PYTHON's torch
#       (default python3; the PyTorch side needs torchvision and numpy there too), then runs
#         1. the parity tests on tch-cuda:N against flex (weights, embeddings, gradients, one
#            SGD step, torchvision's features, checkpoints moved both ways);
#         2. the default experiment at smoke size (`--smoke`) on tch-cuda:N;
#         3. paper-cub.ron at smoke size on synthetic 224-px CUB-format data (random init:
#            the machine has no ImageNet weights), ResNet-50, batch 128;
#         4. the ResNet-50 train step (batch 16, 224 px, frozen BN) of ours against
#            benches/pytorch/train_step.py on the same GPU;
#       and writes DIR/gpu-check.md (default DIR: gpu-check-out): images per second and their
#       ratio, peak device memory from our records and from torch.cuda.max_memory_allocated,
#       and the share of each epoch spent waiting for data. Logs of every step go to DIR too.
#       `--cpu` runs the same steps on LibTorch's CPU, to try the script where there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=target/gpu-check

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

prepare() {
    local torch=2.9.0
    while [ $# -gt 0 ]; do
        case "$1" in
            --torch) torch="$2"; shift 2 ;;
            *) echo "gpu-check.sh prepare: unknown option '$1'" >&2; exit 2 ;;
        esac
    done
    eval "$(scripts/libtorch.sh --torch "$torch")"
    rm -rf "$bundle"
    mkdir -p "$bundle/bin" "$bundle/plugins"
    # Every workspace crate, so that every plugin library is built in the release profile.
    cargo build --release --workspace --features dmlbench/tch
    cp target/release/dmlbench target/release/dmlbench-plugin-job "$bundle/bin/"
    cp target/release/libdmlbench_loss_*.so target/release/libdmlbench_miner_*.so "$bundle/plugins/"
    # The same feature set as the build above, so that nothing is compiled twice.
    local exe
    for target in "test --release --test backend_parity" "bench --bench train_step"; do
        # shellcheck disable=SC2086 # the cargo command and its target, on purpose
        exe="$(cargo $target --workspace --features dmlbench/tch --no-run --message-format=json \
            | python3 -c 'import json, sys
found = [m["executable"] for m in map(json.loads, sys.stdin)
         if m.get("reason") == "compiler-artifact" and m.get("executable")]
print(found[-1])')"
        cp "$exe" "$bundle/bin/${target##* }"
    done
    strip "$bundle"/bin/* "$bundle"/plugins/*
    echo "$torch" >"$bundle/torch-version"
    du -sh "$bundle"
    echo "gpu-check.sh: bundle ready in $bundle (built against torch $torch)"
}

run() {
    local python=python3 gpu=0 cpu="" out=gpu-check-out
    while [ $# -gt 0 ]; do
        case "$1" in
            --python) python="$2"; shift 2 ;;
            --gpu) gpu="$2"; shift 2 ;;
            --cpu) cpu=1; shift ;;
            --out) out="$2"; shift 2 ;;
            *) echo "gpu-check.sh run: unknown option '$1'" >&2; exit 2 ;;
        esac
    done
    # The device for dmlbench, its benchmark's name, and the device for PyTorch.
    local device="tch-cuda:$gpu" bench="libtorch-cuda:$gpu" torch_device="cuda:$gpu"
    [ -z "$cpu" ] || { device=tch; bench=libtorch; torch_device=cpu; }
    [ -x "$bundle/bin/dmlbench" ] || { echo "gpu-check.sh: no $bundle/bin/dmlbench; run 'scripts/gpu-check.sh prepare' on a build machine first" >&2; exit 1; }
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    local root
    root="$(pwd)"
    local torch_lib torch_version
    torch_lib="$("$python" -W ignore -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    torch_version="$("$python" -W ignore -c 'import torch; print(torch.__version__)')"
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # The host looks for plugin libraries where a release build puts them; newer than the
    # sources, they are not rebuilt (there is no cargo here).
    mkdir -p target/release
    cp "$bundle"/plugins/*.so target/release/
    touch target/release/*.so
    cp "$bundle/bin/dmlbench" "$bundle/bin/dmlbench-plugin-job" target/release/
    local dmlbench="$root/target/release/dmlbench"
    local status=0

    echo "== 1. parity on $device" | tee "$out/parity.log"
    CARGO_MANIFEST_DIR="$root/models" DMLBENCH_PARITY_DEVICE="$device" \
        "$bundle/bin/backend_parity" --test-threads 1 >>"$out/parity.log" 2>&1 || status=1
    local parity
    parity="$(grep -E '^test result' "$out/parity.log" | tail -1 || echo 'did not run')"

    echo "== 2. default experiment, smoke, $device"
    "$dmlbench" run --smoke --device "$device" --results "$out/runs" >"$out/default.log" 2>&1 || status=1

    echo "== 3. paper-cub, smoke, synthetic 224-px CUB"
    "$dmlbench" data synth --format cub --out data/gpu-check-cub --classes 20 --per-class 16 --size 256 \
        >"$out/paper-cub.log" 2>&1 || status=1
    sed -e 's|root: "data/CUB_200_2011"|root: "data/gpu-check-cub"|' \
        -e 's|weights: Some("weights/resnet50-0676ba61.pth")|weights: None|' \
        -e 's|name: "paper-cub"|name: "paper-cub-synthetic"|' \
        experiments/paper-cub.ron >"$out/paper-cub-synthetic.ron"
    "$dmlbench" run "$out/paper-cub-synthetic.ron" --smoke --device "$device" --results "$out/runs" \
        >>"$out/paper-cub.log" 2>&1 || status=1

    echo "== 4. ResNet-50 train step: ours and PyTorch's"
    local bench_env=(env DMLBENCH_BENCH_GPU="$gpu")
    [ -z "$cpu" ] || bench_env=(env -u DMLBENCH_BENCH_GPU)
    "${bench_env[@]}" "$bundle/bin/train_step" --bench "$bench/resnet50" >"$out/train_step.log" 2>&1 || status=1
    "$python" benches/pytorch/train_step.py --case resnet50 --device "$torch_device" --steps 30 \
        --json "$out/pytorch_train_step.json" >"$out/pytorch_train_step.log" 2>&1 || status=1

    "$python" - "$out" "$torch_version" "$parity" "$(cat "$bundle/torch-version" 2>/dev/null || echo '?')" <<'EOF' || status=1
import glob, json, os, re, sys

out, torch_version, parity, built_against = sys.argv[1:5]

def records(name):
    found = []
    for path in sorted(glob.glob(os.path.join(out, "runs", name, "*.ron"))):
        if path.endswith("experiment.ron"):
            continue
        text = open(path).read()
        def number(field):
            m = re.search(r"\b%s:\s*(?:Some\()?([0-9.eE+-]+)" % field, text)
            return float(m.group(1)) if m else None
        def numbers(field):
            return [float(v) for v in re.findall(r"\b%s:\s*([0-9.eE+-]+)" % field, text)]
        found.append({
            "cell": os.path.basename(path)[:-4],
            "status": "completed" if "status: Completed" in text else "failed",
            "device_mib": (number("peak_device_bytes") or 0) / 2**20 or None,
            "img_s": numbers("images_per_second"),
            "data_s": sum(numbers("data_s")),
            "total_s": sum(numbers("total_s")) - sum(numbers("eval_s")),
        })
    return found

def criterion_throughput(log):
    text = open(log).read() if os.path.exists(log) else ""
    m = re.search(r"thrpt:\s*\[\s*[0-9.]+\s*\S+\s+([0-9.]+)\s*(\S+)", text)
    if not m:
        return None
    value, unit = float(m.group(1)), m.group(2)
    return value * {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6}.get(unit, 1)

def fmt(value):
    return f"{value:.1f}" if value is not None else "n/a"

ours = criterion_throughput(os.path.join(out, "train_step.log"))
theirs_path = os.path.join(out, "pytorch_train_step.json")
theirs = json.load(open(theirs_path))["results"][0] if os.path.exists(theirs_path) else {}
torch_ips = theirs.get("median_images_per_second")
torch_mib = theirs.get("peak_device_mib")

lines = ["# GPU check", "",
         f"PyTorch on this machine: {torch_version}; dmlbench built against PyPI's torch {built_against}.", "",
         f"Parity tests against flex: `{parity}`", "",
         "## ResNet-50 train step (batch 16, 224 px, frozen BN)", "",
         "| | images/s | peak device memory |", "|---|---|---|",
         f"| dmlbench (tch) | {fmt(ours)} | see the runs below |",
         f"| PyTorch eager | {fmt(torch_ips)} | " + (f"{torch_mib:.0f} MiB (max_memory_allocated)" if torch_mib else "n/a") + " |"]
if ours and torch_ips:
    lines += ["", f"dmlbench / PyTorch: {ours / torch_ips:.2f}"]
lines += ["", "## Runs (smoke size, one epoch)", "",
          "| experiment | cell | status | train images/s | peak device memory (NVML) | data wait / train time |",
          "|---|---|---|---|---|---|"]
for name in ("default-smoke", "paper-cub-synthetic-smoke"):  # --smoke names them so
    for r in records(name):
        share = f"{100 * r['data_s'] / r['total_s']:.0f}%" if r["total_s"] > 0 else "n/a"
        ips = ", ".join(f"{v:.1f}" for v in r["img_s"]) or "n/a"
        mem = f"{r['device_mib']:.0f} MiB" if r["device_mib"] else "not recorded"
        lines.append(f"| {name} | {r['cell']} | {r['status']} | {ips} | {mem} | {share} |")
open(os.path.join(out, "gpu-check.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
    exit "$status"
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    run) shift; run "$@" ;;
    -h|--help|"") usage ;;
    *) echo "gpu-check.sh: unknown command '$1' (prepare or run)" >&2; exit 2 ;;
esac
