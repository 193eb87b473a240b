#!/usr/bin/env bash
# Sets up the LibTorch that `--features tch` builds against: a Python virtual environment with
# PyTorch from PyPI, then prints the environment cargo and dmlbench need, as shell commands.
#
#   eval "$(scripts/libtorch.sh)"                 # torch 2.9.0, the version burn 0.22's tch expects
#   cargo build --release -p dmlbench --features tch
#   target/release/dmlbench run --device tch
#
# Options:
#   --venv DIR       where the environment lives (default: ~/.cache/dmlbench/torch-VERSION);
#                    an existing one with the right torch is reused, so this is cheap to repeat
#   --torch VERSION  another PyTorch (e.g. 2.11.0): prints LIBTORCH_BYPASS_VERSION_CHECK=1 too
#   --python PATH    an existing Python that already has torch: nothing is installed
#
# The PyPI wheel for Linux is PyTorch's CUDA build: it brings NVIDIA's CUDA libraries (about
# 4 GB) and runs on machines with or without a GPU, so one build serves `--device tch` and
# `--device tch-cuda:N`. Progress goes to stderr; only the exports go to stdout.
set -euo pipefail

expected="2.9.0"   # burn 0.22 → tch 0.22 → PyTorch 2.9.0
version="$expected"
venv=""
python=""
while [ $# -gt 0 ]; do
    case "$1" in
        --venv) venv="$2"; shift 2 ;;
        --torch) version="$2"; shift 2 ;;
        --python) python="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "libtorch.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$python" ]; then
    venv="${venv:-${XDG_CACHE_HOME:-$HOME/.cache}/dmlbench/torch-$version}"
    python="$venv/bin/python"
    installed="$("$python" -W ignore -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
    if [ "$installed" != "$version" ]; then
        echo "libtorch.sh: installing torch==$version into $venv (a few GB, a few minutes)" >&2
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$version" >&2
    else
        echo "libtorch.sh: reusing torch $installed in $venv" >&2
    fi
fi

info="$("$python" -W ignore -c 'import os, sys, torch; print(torch.__version__.split("+")[0]); print(os.path.join(os.path.dirname(torch.__file__), "lib")); print(sys.prefix)')" || {
    echo "libtorch.sh: $python cannot import torch" >&2
    exit 1
}
found="$(sed -n 1p <<<"$info")"
lib="$(sed -n 2p <<<"$info")"
prefix="$(sed -n 3p <<<"$info")"

# torch-sys asks `python` (inside a virtual environment) or `python3` where torch lives.
echo "export LIBTORCH_USE_PYTORCH=1"
echo "export VIRTUAL_ENV='$prefix'"
echo "export PATH='$(dirname "$python")':\"\$PATH\""
# Binaries built this way record this directory as their run path; LD_LIBRARY_PATH lets a
# binary find it where it was not built.
echo "export LD_LIBRARY_PATH='$lib'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
if [ "$found" != "$expected" ]; then
    echo "libtorch.sh: torch $found is not the $expected that tch 0.22 expects; bypassing its version check" >&2
    echo "export LIBTORCH_BYPASS_VERSION_CHECK=1"
fi
