# Sourced by demo.sh and test.sh: creates .venv (if needed) and installs tb-varscope with the given extras.
# Usage: . scripts/setup-env.sh EXTRAS   (e.g. "demo" or "test")
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if [ ! -x .venv/bin/python ]; then
  # Debian and Ubuntu ship venv and ensurepip apart from Python itself.
  python3 -c "import ensurepip, venv" 2>/dev/null || apt_install python3-venv
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "$1" = "test" ] && [ -z "${TB_VARSCOPE_NO_TORCH:-}" ]; then
  # For the PyTorch writer tests (they skip without it; set TB_VARSCOPE_NO_TORCH=1 to leave it out). Pinned: these
  # machines carry this release's CPU build, while an open range pulls a newer multi-gigabyte CUDA build.
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[$1]"
export PATH="$PWD/.venv/bin:$PATH"
