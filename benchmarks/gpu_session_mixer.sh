#!/usr/bin/env bash
# MixER's part of a GPU session (issue 16), three steps, each under its own `timeout` cap,
# each going on when the one before failed or ran out of time:
#   1. calibration grid of synth-images (calibrate_synth.py: --shared x --nuisance, the
#      baseline at the CPU-budget schedule, all settings at once) and its --pick;
#   2. the loss ablation (ablation_synth.py: 6 rows x 3 seeds, at once) on the pick
#      (on the learnable preset's knobs if step 1 gave no pick);
#   3. the data-path throughput of gpu_mixer.sh at reduced sizes (torch.compile last).
#
# Step 0, here:  python -m pip wheel --no-deps --no-build-isolation -w dist .
# On the device (carry ["dist"]):  bash benchmarks/gpu_session_mixer.sh "$OUT" [WHEEL]
# Smoke test on a CPU (a few minutes; see docs/mixer.md):
#   DEVICE=cpu SMOKE=1 bash benchmarks/gpu_session_mixer.sh /tmp/smoke dist/vireid_bench-*.whl
#
# Writes under OUT: log.txt (everything), status.txt (one line per step: rc and seconds),
# calibration.csv (a row per finished setting) and pick.json; ablation/runs.csv (a row per
# finished run), ablation/dumps/*.h5 (float16), ablation/summary.csv and ablation.md (when
# step 2 finishes; otherwise make them later with ablation_synth.py OUT/ablation
# --summary-only); throughput/mixer_gpu.csv and mixer_gpu_compile.csv.
#
# Caps, seconds (env): WARMUP_CAP 120 (Numba's first compilation of the scoring kernels,
# cached in the installed wheel; ~30-60 s), CALIB_CAP 170, ABLATION_CAP 170, THROUGHPUT_CAP
# 150 (10.2 min at most; plan ~6-7 min). Sizes (env): CALIB_SHARED "0.3 0.6 0.9", CALIB_NUISANCE
# "1 0.5 0.25", CALIB_JOBS 9, ABLATION_JOBS 18, SEEDS "0 1 2", SCHEDULE (extra arguments of
# both scripts, e.g. "--epochs 2 --iters 4"; default: the CPU-budget schedule),
# THROUGHPUT_EPOCHS 2, THROUGHPUT_ITERS 30, THROUGHPUT_IDS 100, COMPILE 1, WORKERS 8.
set -uo pipefail
OUT=${1:?usage: gpu_session_mixer.sh OUT [WHEEL]}
WHEEL=${2:-$(ls -t dist/vireid_bench-*.whl 2>/dev/null | head -1)}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
CALIB_CAP=${CALIB_CAP:-170}
ABLATION_CAP=${ABLATION_CAP:-170}
THROUGHPUT_CAP=${THROUGHPUT_CAP:-150}
WARMUP_CAP=${WARMUP_CAP:-120}
CALIB_SHARED=${CALIB_SHARED:-0.3 0.6 0.9}
CALIB_NUISANCE=${CALIB_NUISANCE:-1 0.5 0.25}
CALIB_JOBS=${CALIB_JOBS:-9}
ABLATION_JOBS=${ABLATION_JOBS:-18}
SEEDS=${SEEDS:-0 1 2}
SCHEDULE=${SCHEDULE:-}
THROUGHPUT_EPOCHS=${THROUGHPUT_EPOCHS:-2}
THROUGHPUT_ITERS=${THROUGHPUT_ITERS:-30}
THROUGHPUT_IDS=${THROUGHPUT_IDS:-100}
THROUGHPUT_CONFIG=${THROUGHPUT_CONFIG:-paper}
COMPILE=${COMPILE:-1}
WORKERS=${WORKERS:-8}
if [ "${SMOKE:-0}" = 1 ]; then  # tiny sizes for a CPU smoke test of the whole script
    CALIB_SHARED=${SMOKE_SHARED:-0.3 0.9}; CALIB_NUISANCE=${SMOKE_NUISANCE:-0.5}
    CALIB_JOBS=2; ABLATION_JOBS=2; SEEDS="0 1"
    SCHEDULE="--ids 8 --per-cam 1 --epochs 1 --iters 2 --batch-ids 2 --num-pos 1"
    ABLATION_ROWS="--rows L_yme MixER"
    THROUGHPUT_IDS=8; THROUGHPUT_EPOCHS=2; THROUGHPUT_ITERS=2; THROUGHPUT_CONFIG=small
    COMPILE=0; WORKERS=1
fi
ABLATION_ROWS=${ABLATION_ROWS:-}
[ -n "$WHEEL" ] && [ -f "$WHEEL" ] || { echo "no wheel (build one: python -m pip wheel --no-deps --no-build-isolation -w dist .)"; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
REPO=$(cd "$(dirname "$0")/.." && pwd)
exec > >(tee "$OUT/log.txt") 2>&1
: > "$OUT/status.txt"

step() {  # step NAME CAP COMMAND...: run under timeout, record rc and seconds, never fail
    local name=$1 cap=$2 start rc
    shift 2
    echo "=== $name (cap ${cap}s): $*"
    start=$(date +%s)
    timeout --kill-after=15 "$cap" "$@"
    rc=$?
    local took=$(( $(date +%s) - start ))
    local what=ok
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && what="TIMED OUT (finished parts kept)"
    [ $rc -ne 0 ] && [ "$what" = ok ] && what=FAILED
    echo "=== $name: $what, rc $rc, ${took}s"
    echo "$name rc=$rc seconds=$took $what" >> "$OUT/status.txt"
}

# SITE (env): an existing install of the wheel to reuse (gpu_session.sh passes its own, so
# the Numba cache written by the scoring step is reused here)
if [ -z "${SITE:-}" ] || [ ! -d "$SITE/vireid_bench" ]; then
    SITE=$(mktemp -d)/site
    "$PYTHON" -m pip install --quiet --no-deps --target "$SITE" "$WHEEL" || { echo "wheel install FAILED"; exit 2; }
fi
export PYTHONPATH=$SITE
cd "$(dirname "$SITE")"  # the wheel, not the working tree, is imported
DEVICE=$DEVICE "$PYTHON" - <<'EOF'
import os, torch, torchvision, PIL, tabulate, vireid_bench  # noqa: F401 - fail early
cuda = os.environ["DEVICE"] != "cpu"
assert not cuda or torch.cuda.is_available(), "no CUDA device visible"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0) if cuda else "cpu",
      "| cpus", os.cpu_count(), "| vireid_bench from", vireid_bench.__file__)
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
WORK=$(mktemp -d)

# Numba compiles the scoring kernels into the wheel's __pycache__ once, here, so that the
# steps' parallel jobs load them instead of all compiling them at once inside their caps
step numba-warmup "$WARMUP_CAP" "$PYTHON" -c "import sys; sys.path.insert(0, '$REPO/benchmarks')
from synth_runs import warm_kernels; print(f'numba warm-up {warm_kernels():.1f} s')"

# shellcheck disable=SC2086  # word splitting of the lists is wanted
step calibration "$CALIB_CAP" "$PYTHON" "$REPO/benchmarks/calibrate_synth.py" \
    --shared $CALIB_SHARED --nuisance $CALIB_NUISANCE $SCHEDULE --device "$DEVICE" \
    --jobs "$CALIB_JOBS" --workdir "$WORK" --csv "$OUT/calibration.csv" --pick "$OUT/pick.json"

KNOBS=(--knobs-json "$OUT/pick.json")
if [ ! -s "$OUT/pick.json" ]; then
    echo "no pick.json: the ablation uses the learnable preset's knobs (shared 0.6, nuisance 0.5)"
    KNOBS=(--shared 0.6 --nuisance 0.5)
fi
# shellcheck disable=SC2086
step ablation "$ABLATION_CAP" "$PYTHON" "$REPO/benchmarks/ablation_synth.py" "$OUT/ablation" \
    "${KNOBS[@]}" $SCHEDULE $ABLATION_ROWS --seeds $SEEDS --device "$DEVICE" \
    --jobs "$ABLATION_JOBS" --workdir "$WORK" --data-dir "$WORK/ablation-data"

step throughput "$THROUGHPUT_CAP" env DEVICE="$DEVICE" EPOCHS="$THROUGHPUT_EPOCHS" \
    ITERS="$THROUGHPUT_ITERS" IDS="$THROUGHPUT_IDS" CONFIG="$THROUGHPUT_CONFIG" \
    COMPILE="$COMPILE" WORKERS="$WORKERS" PYTHON="$PYTHON" \
    bash -c 'cd "$0" && exec bash benchmarks/gpu_mixer.sh "$1" "$2"' \
    "$REPO" "$WHEEL" "$OUT/throughput"  # gpu_mixer.sh finds the repository as its cwd

rm -rf "$WORK"
echo "--- status"; cat "$OUT/status.txt"
echo "done: $OUT"
