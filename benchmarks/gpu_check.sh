#!/usr/bin/env bash
# The first thing to run on a GPU machine, in one call and <= 8 minutes on one H200 (each part has its own time
# limit): unlearning steps at the Llama-2-7B shape, bf16 evaluation and generation throughput, one ZeRO-3 step.
# Usage: benchmarks/gpu_check.sh   (PY=path/to/python to use another interpreter than .venv/bin/python)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
status=0

echo "== 1/3 unlearning at the Llama-2-7B shape (bf16, batch 1 x 16 x 256): s/step, peak memory, MFU"
timeout 270 "$PY" benchmarks/gpu_step.py --methods ga,ga_kl,memflex,npo || status=1

echo "== 2/3 bf16 evaluation and generation throughput at the Llama-2-7B shape"
timeout 90 "$PY" benchmarks/eval_throughput.py || status=1

echo "== 3/3 one DeepSpeed ZeRO-3 unlearning run (GA+KL: the frozen reference adapter on a sharded model)"
if "$PY" -c "import deepspeed" 2>/dev/null; then
    PATH="$(dirname "$PY"):$PATH" timeout 120 "$PY" benchmarks/zero3_step.py || status=1
else
    echo "skipped: deepspeed is not installed (pip install deepspeed)"
fi
exit $status
