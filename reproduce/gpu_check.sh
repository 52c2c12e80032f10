#!/usr/bin/env bash
# The prepared GPU check: under 8 minutes on one H100/H200, random weights of the exact Qwen2.5-VL-3B architecture.
#   bash reproduce/gpu_check.sh [OUT_DIR]
# Needs the GPU environment of README "On a GPU box" (vllm==0.32.0 + torch 2.13.0). Prints one table: vLLM sampling
# tokens/s, GRPO update tokens/s and MFU, weight-push time and a 2-step self-play run with both engines and
# training sharing the GPU, beside EasyR1 v0.3.2's published 1,800 tokens/s/GPU (details: reproduce/gpu_check.py); then
# the planned vs measured peak memory of one update (reproduce/memory_check.py). 390 + 90 s: under 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_out}
PYTHON=${PYTHON:-python}
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}   # one GPU: engines and training share it
MEM=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_properties(0).total_memory / 1024**3)")
"$PYTHON" -c "import torch, vllm; print('torch', torch.__version__, 'vllm', vllm.__version__, torch.cuda.get_device_name(0))"
timeout 390 "$PYTHON" reproduce/gpu_check.py --size 3b --device cuda --gpu-memory "$MEM" --out "$OUT"
# issue 22: the planner's training memory against the measured peak of one update, 3 reduced Qwen2.5-VL configs
exec timeout 90 "$PYTHON" reproduce/memory_check.py --device cuda --gpu-memory "$MEM" --out "$OUT/memory"
