#!/usr/bin/env bash
# GPU check (issue 15): on a machine with an NVIDIA GPU, install nnrun and train mnist_cnn and mnist_mlp
# with precision float32, float16 and bfloat16, under strategy none and mirrored, beside the plain-Keras
# script in float32, and print epoch times and test accuracies as one markdown table.
#
#   NNRUN_DATA_DIR=/path/to/datasets bash bench/gpu_check.sh [EPOCHS]     # from the repository root
#
# It needs the datasets folder (mnist/ with the IDX files). Nothing here assumes a particular GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-3}"
: "${NNRUN_DATA_DIR:?set NNRUN_DATA_DIR to the folder with mnist/}"
export NNRUN_DATA_DIR MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=3

if [ ! -x .venv-gpu/bin/nnrun ]; then
  python3 -m venv .venv-gpu
  .venv-gpu/bin/python -m pip install --quiet --upgrade pip
  # tensorflow[and-cuda] brings the CUDA libraries TensorFlow needs on Linux.
  .venv-gpu/bin/python -m pip install --quiet -c constraints.txt -e . "tensorflow[and-cuda]==$(grep '^tensorflow==' constraints.txt | cut -d= -f3)"
fi
BIN=.venv-gpu/bin
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$BIN/python -c "import tensorflow as tf; print('TensorFlow', tf.__version__, 'GPUs:', tf.config.list_physical_devices('GPU'))"

RUNS=$(mktemp -d)
echo
echo "| config | precision | strategy | epoch s (fastest) | test accuracy |"
echo "| --- | --- | --- | ---: | ---: |"
for config in mnist_cnn mnist_mlp; do
  for precision in float32 float16 bfloat16; do
    for strategy in none mirrored; do
      run=$($BIN/nnrun train "configs/$config.yaml" --quiet --runs-dir "$RUNS" --set "training.epochs=$EPOCHS" \
              --set "training.precision=$precision" --set "distribution.strategy=$strategy") || { echo "| $config | $precision | $strategy | failed | |"; continue; }
      $BIN/python - "$run" "$config" "$precision" "$strategy" <<'PY'
import csv, json, sys
run, config, precision, strategy = sys.argv[1:]
times = [float(r["time_s"]) for r in csv.DictReader(open(f"{run}/history.csv"))]
accuracy = json.load(open(f"{run}/metrics.json"))["test"]["accuracy"]
print(f"| {config} | {precision} | {strategy} | {min(times):.2f} | {accuracy:.4f} |")
PY
    done
  done
done
# The plain-Keras script of the Conv2D config, float32, as the reference.
(cd bench/baselines && BENCH_EPOCHS="$EPOCHS" BENCH_VERBOSE=0 ../../$BIN/python mnist_cnn.py | grep '^RESULT' | \
  ../../$BIN/python -c "import json,sys; r=json.loads(sys.stdin.read()[7:]); print(f\"| mnist_cnn (plain Keras) | float32 | none | {min(r['epoch_seconds']):.2f} | {r['test_accuracy']:.4f} |\")")
rm -rf "$RUNS"
