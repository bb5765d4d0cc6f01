#!/usr/bin/env bash
# The GPU pre-training benchmarks in one go, for a CUDA machine that has PyTorch but no
# internet (a cluster node, a container image).
#
#   bench/gpu_bench.sh wheels DIR     # online: the wheels the benchmark needs beyond torch
#   bench/gpu_bench.sh run DIR OUT    # on the GPU machine: install them offline, run, write OUT
#
# `wheels` downloads binary wheels for the GPU machine's Python (GPU_PYTHON, default 3.12) and
# builds the pure-Python ones it cannot download. `run` installs them without touching torch,
# then writes to OUT: throughput.txt/.json (the wav2vec 2.0 table at BASE size, batch 8 x 15 s,
# compiled, every position convolution, and the profile) and, if .bench/segments.npz exists
# (bench/speech_segments.py), curves.txt/.json (200 updates of the reference and sslgrid on real
# speech). SIZE, DEVICE, BATCH, CLIP_SECONDS and CURVE_STEPS override the defaults, e.g. to try the
# script on a CPU: SIZE=tiny DEVICE=cpu BATCH=2 CLIP_SECONDS=1 CURVE_STEPS=4.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned as in envs/requirements.txt / envs/constraints.txt; numpy, pyyaml, tqdm, packaging and
# the Hugging Face hub client come with the PyTorch images.
pin() { grep -h -i "^$1==" envs/requirements.txt envs/constraints.txt | head -n 1; }
PACKAGES=(transformers lhotse soundfile cffi pycparser cytoolz intervaltree audioread)

case "${1:-}" in
wheels)
    dir=${2:?usage: $0 wheels DIR}
    mkdir -p "$dir"
    for name in "${PACKAGES[@]}"; do
        spec=$(pin "$name" || true)
        [ -n "$spec" ] || { echo "$name is not pinned in envs/" >&2; exit 2; }
        python3 -m pip download -q --no-deps --only-binary=:all: -d "$dir" \
            --python-version "${GPU_PYTHON:-3.12}" --platform manylinux_2_28_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 "$spec" \
            || python3 -m pip wheel -q --no-deps -w "$dir" "$spec"
    done
    ls "$dir"
    ;;
run)
    dir=${2:?usage: $0 run DIR OUT}
    out=${3:?usage: $0 run DIR OUT}
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps "$dir"/*.whl
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    nvidia-smi >"$out/device.txt" 2>&1 || true
    python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)' \
        >>"$out/device.txt"
    common=(--size "${SIZE:-paper}" --device "${DEVICE:-cuda}" --batch "${BATCH:-8}"
        --seconds "${CLIP_SECONDS:-15}" --models wav2vec2 --no-methods-table)
    python3 bench/pretrain_throughput.py "${common[@]}" --steps 10 --warmup 3 --compile \
        --pos-convs cudnn gemm fft --profile --json "$out/throughput.json" \
        2>&1 | tee "$out/throughput.txt"
    if [ -f .bench/segments.npz ]; then
        python3 bench/pretrain_throughput.py "${common[@]}" --no-wav2vec2-table --compile \
            --curve-steps "${CURVE_STEPS:-200}" --curve-data .bench/segments.npz \
            --json "$out/curves.json" 2>&1 | tee "$out/curves.txt"
    fi
    ;;
*)
    sed -n 2,14p "$0" >&2
    exit 2
    ;;
esac
