#!/usr/bin/env bash
# One GPU burst (issue 12, item 5): in a single `device` run, train the current recipe in bf16 for a
# fixed wall-clock budget, synthetic clips generated ahead by the machine's CPU cores, starting from
# the latest weights, and write the float16 checkpoint (sharded below 16 MiB a file) and
# metrics.jsonl under $OUT.
#
#   bash scripts/gpu_burst.sh [RECIPE] [MINUTES] [INIT_DIR] [KEY=VALUE ...]
#
#   RECIPE    default configs/gpu-burst.yaml
#   MINUTES   training wall-clock budget, default 7 (the run then validates and saves: leave ~2 min)
#   INIT_DIR  weights to start from (a save_pretrained folder, e.g. the last burst's files carried
#             into the tree), default (or ""): the recipe's model.init_from
#   KEY=VALUE recipe overrides, as `mem4d train --set` takes them
#
# On the device machine nothing can be installed from the network; mem4d needs only what its image
# holds (torch, numpy, scipy, safetensors, einops, pyyaml, pillow, tqdm), so it runs from src/.
# Tested on CPU with a few steps (tests/train/test_gpu_burst.py):
#   MEM4D_BURST_DEVICE=cpu OUT=/tmp/b bash scripts/gpu_burst.sh configs/gpu-burst.yaml 0.1 "" train.batch_size=1 ...
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=${1:-configs/gpu-burst.yaml}
MINUTES=${2:-7}
INIT=${3:-}
shift $(( $# < 3 ? $# : 3 ))
OUT=${OUT:-burst_out}
DEVICE=${MEM4D_BURST_DEVICE:-cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
CORES=$(nproc)
WORKERS=$(( CORES > 3 ? CORES - 2 : 1 ))
RUN=$(mktemp -d)/run
"$PY" - <<'PY' | tee "$OUT/environment.txt"
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
EXTRA=(--set "train.device=$DEVICE" --set "train.time_limit_min=$MINUTES" --set "train.data_workers=$WORKERS"
       --set train.tensorboard=false)
if [ -n "$INIT" ]; then EXTRA+=(--set "model.init_from=$INIT"); fi
for kv in "$@"; do EXTRA+=(--set "$kv"); done
set +e
"$PY" -m mem4d.cli.main train --config "$RECIPE" --out "$RUN" --no-progress "${EXTRA[@]}" 2>&1 | tee "$OUT/train.log"
STATUS=${PIPESTATUS[0]}
set -e
cp "$RUN/metrics.jsonl" "$OUT/metrics.jsonl" 2>/dev/null || true
if [ -f "$RUN/final/config.json" ]; then
  "$PY" - "$RUN/final" "$OUT/weights" <<'PY'
import sys, torch
from mem4d.model.mem4d import Mem4D
model = Mem4D.from_pretrained(sys.argv[1])
model.save_pretrained(sys.argv[2], dtype=torch.float16, max_shard_mb=15.0)
print("saved", sys.argv[2])
PY
fi
exit "$STATUS"
