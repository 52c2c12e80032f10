#!/usr/bin/env bash
# Build the separate environment the lmms-eval identity test (tests/eval/test_lmms_identity.py) runs in:
#   bash .ci/lmms_eval_env.sh [.lmms-eval-venv]
# lmms-eval 0.7.3 pins wandb==0.25.0 and pulls timm, spacy, sentence_transformers, opencv... that visplay's own
# environment does not want, so it gets its own venv. torch stays the local CPU wheel (torch==2.13.0, first, and
# constrained afterwards); torchaudio/torchcodec are never installed. visplay itself goes in without its
# dependencies' extras so the test can import both lmms-eval's task functions and visplay's protocol.
set -euo pipefail
venv=${1:-.lmms-eval-venv}
root=$(cd "$(dirname "$0")/.." && pwd)
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install torch==2.13.0
cons=$(mktemp)
trap 'rm -f "$cons"' EXIT
cat "$root/constraints.txt" > "$cons"
"${pip[@]}" install -c "$cons" lmms-eval==0.7.3
# MathVista's task module imports Levenshtein (its edit distance picks the nearest choice); lmms-eval does not
# declare it, so the identity test's import of lmms_eval.tasks.mathvista needs it installed.
"${pip[@]}" install -c "$cons" Levenshtein
# MathVision's eval_utils.py imports latex2sympy2 (is_equal compares answers through it); lmms-eval does not
# declare it either (its utils.py swallows the ImportError, and process_results then fails on a NameError).
"${pip[@]}" install -c "$cons" latex2sympy2
# The torchvision wheel pip resolves is built for CUDA torch and fails to import next to the CPU wheel
# ("operator torchvision::nms does not exist"); the task functions the test calls need no torchvision, and
# transformers skips it when absent.
"${pip[@]}" uninstall -y torchvision
"${pip[@]}" install -c "$cons" -e "$root" pytest
if "$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(torchaudio|torchcodec) '; then
    echo "lmms_eval_env: torchaudio/torchcodec were pulled in; remove them" >&2
    exit 1
fi
"$venv/bin/python" -c "import lmms_eval.tasks.mmstar.utils, lmms_eval.tasks.mmmu.utils, lmms_eval.tasks.mathvision.eval_utils, Levenshtein; print('lmms-eval ready')"
