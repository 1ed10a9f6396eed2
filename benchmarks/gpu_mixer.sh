#!/usr/bin/env bash
# MixER on a GPU, in one short device session: install a wheel of the project, render the
# synthetic SYSU-MM01 data, time two data-path configurations at the paper configuration
# (ResNet-50, 288x144, 10 x (4 V + 4 I), AMP, channels_last), write CSVs.
#
# Step 0, here (no GPU needed), from the repository root:
#     python -m pip wheel --no-deps --no-build-isolation -w dist .
# Step 1, on the device machine (dist/ travels with the working tree: carry ["dist"]):
#     bash benchmarks/gpu_mixer.sh dist/vireid_bench-*.whl "$OUT"
#
# Needs there: python with torch (CUDA), torchvision, numpy, pandas, h5py, click, tabulate,
# Pillow (the wheel is installed with --no-deps: nothing is downloaded). Writes
# OUT/mixer_gpu.csv (cache off / 0 workers against cache on / WORKERS workers, loader +
# training step), OUT/mixer_gpu_compile.csv (the second one with torch.compile; skipped
# with COMPILE=0, and a compile failure is reported, not hidden) and OUT/log.txt.
# Budget: rendering about 30 s, each configuration about 1 min, compilation 1-3 min.
set -euo pipefail
WHEEL=${1:?usage: gpu_mixer.sh WHEEL [OUT]}
OUT=${2:-$PWD/gpu-out}
PYTHON=${PYTHON:-python3}
WORKERS=${WORKERS:-8}
EPOCHS=${EPOCHS:-4}
ITERS=${ITERS:-40}
COMPILE=${COMPILE:-1}
DEVICE=${DEVICE:-cuda}   # local smoke test: DEVICE=cpu CONFIG=small IDS=8 ITERS=2 EPOCHS=2 WORKERS=1
IDS=${IDS:-200}
CONFIG=${CONFIG:-paper}  # CONFIG=small for the smoke test
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
exec > >(tee "$OUT/log.txt") 2>&1

REPO=$PWD
SITE=$(mktemp -d)/site
"$PYTHON" -m pip install --quiet --no-deps --target "$SITE" "$WHEEL"
export PYTHONPATH=$SITE
cd "$(dirname "$SITE")"  # so that the wheel, not the working tree, is imported
DEVICE=$DEVICE "$PYTHON" - <<'EOF'
import os, torch, torchvision, PIL, tabulate, vireid_bench  # noqa: F401 - fail early
cuda = os.environ["DEVICE"] != "cpu"
assert not cuda or torch.cuda.is_available(), "no CUDA device visible"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0) if cuda else "cpu",
      "| vireid_bench from", vireid_bench.__file__)
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

DATA=$(mktemp -d)/synth-sysu
# the issue's layout: 200 identities (100 train), 4 images per identity and camera
"$PYTHON" -c "from vireid_bench.cli.main import cli; cli()" synth-images "$DATA" \
    --layout sysu-mm01 --ids "$IDS" --per-cam 4 --size 288x144 --seed 0

COMMON=(--only-pipeline --with-model --pipeline-config "$CONFIG" --device "$DEVICE"
        --data-root "$DATA" --pipeline-epochs "$EPOCHS" --pipeline-iters "$ITERS")
"$PYTHON" "$REPO/benchmarks/bench_mixer.py" "${COMMON[@]}" --loader off:0 --loader "on:$WORKERS" \
    --csv "$OUT/mixer_gpu.csv"
if [ "$COMPILE" = 1 ]; then
    "$PYTHON" "$REPO/benchmarks/bench_mixer.py" "${COMMON[@]}" --loader "on:$WORKERS" --compile \
        --csv "$OUT/mixer_gpu_compile.csv" || echo "torch.compile run FAILED (see above)"
fi
echo "done: $OUT"
