#!/usr/bin/env bash
# The package installs anywhere: build the wheel, install it into a fresh virtualenv outside the checkout and run
# `visplay recipe tiny --explain` and a one-step run there (recipes and the paper table come from the package).
#   bash .ci/wheel_check.sh DEPS_VENV
# Cheap on purpose: the fresh venv gets only the wheel (--no-deps); its dependencies are borrowed from DEPS_VENV's
# site-packages through a .pth line (not processed as a site dir, so DEPS_VENV's editable visplay stays invisible).
set -euo pipefail
deps_venv=$(cd "${1:-.ci-venv}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/visplay-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$deps_venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$root"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --no-deps "$work"/dist/visplay-*.whl
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
deps_site=$("$deps_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
echo "$deps_site" > "$site/zz_visplay_deps.pth"
cd "$work"  # outside the checkout: no ./recipes, no reproduce/
where=$("$work/venv/bin/python" -c 'import visplay; print(visplay.__file__)')
case "$where" in "$work"/venv/*) ;; *) echo "visplay imported from $where, not the wheel"; exit 1;; esac
"$work/venv/bin/visplay" recipe tiny --explain > explain.txt
grep -q "^questioner.steps = 8" explain.txt || { echo "recipe --explain printed no questioner.steps"; exit 1; }
"$work/venv/bin/python" -c 'from visplay.report.paper import load_table1; assert load_table1().rows'
mkdir tiny  # a folder named like the recipe must not be taken for it
"$work/venv/bin/visplay" run tiny -q name=wheel iterations=1 questioner.steps=1 reasoner.steps=1 \
    reasoner.set_images=4 plugins.games.cold_start_steps=1 plugins.games.cold_start_reasoner_steps=1 \
    plugins.games.held_out=2 plugins.games.cold_start_images=4 data.num_images=8
test -f runs/wheel/run.db && test -d runs/wheel/tensorboard && test -f runs/wheel/report/index.html
echo "wheel check passed: $(basename "$work"/dist/visplay-*.whl) installed and ran outside the checkout"
