#!/usr/bin/env bash
# The whole GPU session of issues 14 and 16 in one command, sized for one device call of at
# most 10 minutes (the device's limit) with every step under its own cap:
#   1. bench_gpu_score.py: the torch backend on the GPU against its matmul floor (100k x 100k
#      --protocol all; 1k x 1M cross-modal) and Numba parity (issue 14);
#   2. gpu_session_mixer.sh: synth-images calibration grid and pick, the Table-5 ablation over
#      seeds on the pick, the MixER data-path throughput (issue 16).
# The device returns at most 8 files from OUT, so the key CSVs are copied to OUT's top level
# and everything else (dumps, logs) is packed into OUT/bundle.tgz.part-* (15 MiB pieces;
# join with `cat bundle.tgz.part-* | tar xz`).
#
# Here:    python -m pip wheel --no-deps --no-build-isolation -w dist .
# Device:  bash benchmarks/gpu_session.sh "$OUT" dist/vireid_bench-*.whl    (carry ["dist"])
# Smoke test on a CPU (tiny sizes):
#   DEVICE=cpu SMOKE=1 SCORE_ARGS="--pool 4000 --big-gallery 20000" \
#       bash benchmarks/gpu_session.sh /tmp/gpu-smoke dist/vireid_bench-*.whl
#
# Caps, seconds (env): SCORE_CAP 100, then gpu_session_mixer.sh's WARMUP_CAP 90, CALIB_CAP
# 140, ABLATION_CAP 150, THROUGHPUT_CAP 80 (COMPILE 0): 560 s at most, plus the install and
# packing. The wheel is installed once (SITE), so the Numba cache is shared by the steps.
set -uo pipefail
OUT=${1:?usage: gpu_session.sh OUT WHEEL}
WHEEL=${2:?usage: gpu_session.sh OUT WHEEL}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
SCORE_CAP=${SCORE_CAP:-100}
SCORE_ARGS=${SCORE_ARGS:-}
export WARMUP_CAP=${WARMUP_CAP:-90} CALIB_CAP=${CALIB_CAP:-140}
export ABLATION_CAP=${ABLATION_CAP:-150} THROUGHPUT_CAP=${THROUGHPUT_CAP:-80}
export COMPILE=${COMPILE:-0} DEVICE PYTHON
mkdir -p "$OUT/raw"
OUT=$(cd "$OUT" && pwd)
WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
REPO=$(cd "$(dirname "$0")/.." && pwd)
START=$(date +%s)

SITE=$(mktemp -d)/site
"$PYTHON" -m pip install --quiet --no-deps --target "$SITE" "$WHEEL" || { echo "wheel install FAILED"; exit 2; }
echo "=== score (cap ${SCORE_CAP}s)"
# shellcheck disable=SC2086  # SCORE_ARGS is a list of options
(cd "$(dirname "$SITE")" && PYTHONPATH=$SITE PYTHONUNBUFFERED=1 timeout --kill-after=10 "$SCORE_CAP" \
    "$PYTHON" "$REPO/benchmarks/bench_gpu_score.py" --device "$DEVICE" $SCORE_ARGS \
    --csv "$OUT/gpu_score.csv") 2>&1 | tee "$OUT/raw/score_log.txt"
echo "score rc=${PIPESTATUS[0]} seconds=$(( $(date +%s) - START ))" | tee "$OUT/raw/score_status.txt"

SITE=$SITE PYTHONUNBUFFERED=1 bash "$REPO/benchmarks/gpu_session_mixer.sh" "$OUT/raw/mixer" "$WHEEL"

for f in calibration.csv status.txt; do
    [ -f "$OUT/raw/mixer/$f" ] && cp "$OUT/raw/mixer/$f" "$OUT/mixer_$f"
done
[ -f "$OUT/raw/mixer/ablation/runs.csv" ] && cp "$OUT/raw/mixer/ablation/runs.csv" "$OUT/ablation_runs.csv"
tar czf - -C "$OUT" raw | split -b 15m - "$OUT/bundle.tgz.part-"
rm -rf "$OUT/raw"
echo "session done in $(( $(date +%s) - START )) s"; ls -la "$OUT"
