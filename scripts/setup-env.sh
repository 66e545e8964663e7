# Sourced by demo.sh and test.sh: creates .venv (if needed) and installs tb-varscope with the given extras.
# Usage: . scripts/setup-env.sh EXTRAS   (e.g. "demo" or "test")
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "$1" = "test" ]; then
  # The CPU build of PyTorch, pinned: an open range would pull a multi-gigabyte CUDA build.
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[$1]"
export PATH="$PWD/.venv/bin:$PATH"
