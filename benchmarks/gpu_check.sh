#!/usr/bin/env bash
# The GPU check (docs/gpu.md): four parts, each stopped by `timeout`, under 8 minutes on one H200.
#   1. tests/test_cuda.py: every agent's R and the spiking simulator's state, CUDA against CPU
#   2. the spiking simulator's throughput at B = 1, 8, 64, 256, 1024 on CPU and CUDA
#   3. the runner: `replaybench run --stream split-fmnist --agent er` on CUDA and CPU
#      (split-mnist5k when Fashion-MNIST is not on the machine)
#   4. sigprop and EFP against backprop on the GPU (benchmarks/forward_gpu.py)
# Everything goes to ./gpu-check, one file per part and summary.json. Where $OUT is set (the device
# machine, which hands back at most 8 files), the folder is built in /tmp and $OUT receives
# summary.json, summary.txt and gpu-check.tar.gz (the whole folder).
#
# Usage: bash benchmarks/gpu_check.sh [--smoke]
#   DEVICE=cpu    run every part on the CPU alone (to try the script without a GPU)
#   --smoke       tiny sizes: the whole script in a couple of minutes
#   PYTHON=...    the interpreter (default: .venv/bin/python, else python3)
#   FMNIST_DIR=.. a folder holding Fashion-MNIST's IDX files
set -u
cd "$(dirname "$0")/.."
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
DEVICE=${DEVICE:-cuda}
DEST=./gpu-check
[ -n "${OUT:-}" ] && DEST=/tmp/gpu-check
rm -rf "$DEST" && mkdir -p "$DEST"
export PYTHONUNBUFFERED=1
log() { echo "[gpu-check $(date -u +%H:%M:%S)] $*" | tee -a "$DEST/notes.txt"; }

# --- the interpreter: this checkout's venv, else the machine's python3 with replaybench installed into /tmp
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then PY=.venv/bin/python
else PY=python3; fi
if ! "$PY" -c "import replaybench" 2>/dev/null; then
  # Offline: wheels carried in .whl/ (docs/gpu.md lists them), then this package without its dependencies.
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site .whl/*.whl
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/gpu-check-site . && rm -rf build
  export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" - <<'EOF' | tee "$DEST/environment.json"
import importlib.util, json, platform, torch
print(json.dumps({
    "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.cuda.is_available(),
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "missing": [m for m in ("replaybench", "mlxtend", "gymnasium", "mnist1d", "sklearn", "avalanche", "xdist")
                if importlib.util.find_spec(m) is None],
}))
EOF
if [ "$DEVICE" != cpu ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  log "DEVICE=$DEVICE but torch sees no CUDA device; rerun with DEVICE=cpu to try the script on the CPU"
  exit 2
fi
DEVICES="cpu"
[ "$DEVICE" != cpu ] && DEVICES="cpu $DEVICE"
status() { # part rc: the part's line in parts.tsv
  local state=ok
  [ "$2" -ne 0 ] && state=failed
  [ "$2" -eq 124 ] && state=timeout
  printf '%s\t%s\t%s\n' "$1" "$2" "$state" >>"$DEST/parts.tsv"
  log "part $1: $state (exit $2)"
}
: >"$DEST/parts.tsv"

# --- 1. CUDA tests (skipped, not failed, without a GPU)
log "part 1: tests/test_cuda.py"
XDIST=""
"$PY" -c "import xdist" 2>/dev/null && [ "$SMOKE" -eq 0 ] && XDIST="-n 8"
timeout 140 "$PY" -m pytest tests/test_cuda.py -v -rs -p no:cacheprovider $XDIST \
  --junitxml="$DEST/cuda_tests.xml" >"$DEST/cuda_tests.log" 2>&1
status cuda_tests $?

# --- 2. spiking simulator throughput against batch size
log "part 2: spiking throughput"
BATCHES="1 8 64 256 1024" STEPS=100 NEURONS=100
[ "$SMOKE" -eq 1 ] && BATCHES="1 8" STEPS=20 NEURONS=100
for d in $DEVICES; do
  # The paper's 100 neurons; each configuration is a fresh process (a CUDA start each). A part stopped
  # by its limit keeps the lines it printed (one JSON line per configuration, smallest batches first).
  limit=75
  [ "$d" != cpu ] && limit=60
  timeout $limit "$PY" benchmarks/snn_throughput.py --device "$d" --neurons $NEURONS --batch $BATCHES \
    --steps $STEPS --min-samples 8 >"$DEST/snn_$d.log" 2>&1
  status "snn_$d" $?
done

# --- 3. the runner: er on split-fmnist, CUDA against CPU
STREAM=split-fmnist DATA=()
if [ "$SMOKE" -eq 1 ]; then STREAM=split-digits
else
  for dir in "${FMNIST_DIR:-}" /usr/share/datasets/fashion-mnist; do
    if [ -n "$dir" ] && ls "$dir"/train-images-idx3-ubyte* >/dev/null 2>&1; then DATA=(--data-dir "$dir"); break; fi
  done
  if [ ${#DATA[@]} -eq 0 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    timeout 30 apt-get install -y -q dataset-fashion-mnist >"$DEST/apt.log" 2>&1 && DATA=(--data-dir /usr/share/datasets/fashion-mnist)
  fi
  if [ ${#DATA[@]} -eq 0 ]; then
    STREAM=split-mnist5k
    log "note: Fashion-MNIST not found (FMNIST_DIR, /usr/share/datasets/fashion-mnist, apt-get); part 3 uses split-mnist5k"
  fi
fi
log "part 3: replaybench run --stream $STREAM --agent er"
for d in $DEVICES; do
  limit=90
  [ "$d" != cpu ] && limit=40
  timeout $limit "$PY" -m replaybench run --stream "$STREAM" --agent er --device "$d" --seeds 0 --no-plots \
    --out "$DEST/run_$d" "${DATA[@]}" >"$DEST/run_$d.log" 2>&1
  status "run_$d" $?
done

# --- 4. sigprop and EFP against backprop on the device
if [ "$SMOKE" -eq 1 ]; then FWD="--dataset digits --hidden 64 64 --epochs 1"
elif [ "$STREAM" = split-fmnist ]; then FWD="--dataset fashion-mnist --epochs 2"
else FWD="--dataset mnist5k --epochs 2"; fi
log "part 4: forward learners on $DEVICE ($FWD)"
timeout 40 "$PY" benchmarks/forward_gpu.py --device "$DEVICE" $FWD "${DATA[@]}" --json-out "$DEST/forward.json" \
  >"$DEST/forward.log" 2>&1
status forward $?

# --- summary
"$PY" benchmarks/gpu_check_summary.py "$DEST" | tee "$DEST/summary.txt"
if [ -n "${OUT:-}" ]; then
  cp "$DEST/summary.json" "$DEST/summary.txt" "$OUT/"
  tar czf "$OUT/gpu-check.tar.gz" -C "$(dirname "$DEST")" "$(basename "$DEST")"
fi
