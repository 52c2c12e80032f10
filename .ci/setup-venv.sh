#!/usr/bin/env bash
# Create (or refresh) a virtualenv with visplay and its first-party plugins installed.
#   bash .ci/setup-venv.sh .venv          runtime only
#   bash .ci/setup-venv.sh .venv dev      + test/benchmark/lint tools and the example third-party plugin
# torch goes in first, pinned to the local CPU wheel; everything after is constrained to it (ENVIRONMENT.md:
# any unpinned torch requirement would pull several GB of CUDA packages). Never installs torchaudio/torchcodec.
set -euo pipefail
venv=${1:-.venv}
extras=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install torch==2.13.0
if [ "$extras" = dev ]; then
    "${pip[@]}" install -c "$root/constraints.txt" -e "$root[cpu,dev]"
    "${pip[@]}" install -c "$root/constraints.txt" "$root/plugins/examples/visplay-length-reward"
else
    "${pip[@]}" install -c "$root/constraints.txt" -e "$root[cpu]"
fi
echo "visplay installed in $venv: activate with 'source $venv/bin/activate'"
