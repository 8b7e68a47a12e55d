#!/usr/bin/env bash
# Wheels of the dependencies a lent GPU machine lacks (it has torch, torchvision, timm, numpy, PyYAML,
# simplejson, matplotlib, tqdm, tabulate, portalocker, but no network): run here, where PyPI is
# reachable, before the GPU call, and carry .whl/ with it; tools/gpu_checks.sh installs them.
#
#   bash tools/gpu_wheels.sh            # -> .whl/ (about 40 MB), for CPython 3.12 on x86-64 Linux
#   PYVER=3.11 bash tools/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
mkdir -p .whl
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
# binary wheels for the target Python (several manylinux tags: pip matches them exactly)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux2010_x86_64 --platform manylinux1_x86_64 -d .whl av decord yacs termcolor
# pure-Python packages published as sources only: built here into wheels that run anywhere
python3 -m pip wheel -q --no-deps -w .whl fvcore iopath
ls -l .whl
