# Sourced by demo.sh and test.sh: creates .venv (if needed) and installs tb-varscope with the given extras, saying
# before each long step what it installs and how big it is, and showing the big downloads as they come.
# Usage: . scripts/setup-env.sh EXTRAS   (e.g. "demo" or "test")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# TensorFlow reads these once, when it is loaded: they must be in the environment before any python starts.
export TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES="" PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  echo "   apt-get install $*"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# pip's own output is hundreds of lines (and a setuptools warning about editable installs): it all goes to
# .venv/pip.log, and the terminal gets each download of a megabyte or more with its size, then the count installed.
pip_install() {
  local started=$SECONDS
  if ! .venv/bin/python -m pip install --progress-bar off "$@" 2>&1 | tee -a .venv/pip.log | pip_progress; then
    echo "   pip failed; the end of .venv/pip.log:" >&2
    tail -n 25 .venv/pip.log >&2
    return 1
  fi
  echo "   done in $((SECONDS - started)) s"
}
packages() { if [ "$1" = 1 ]; then echo "1 package"; else echo "$1 packages"; fi; }
pip_progress() {
  local line rest words
  while IFS= read -r line; do
    case $line in
      *"Downloading "*" MB)")
        rest=${line#*Downloading }
        echo "   downloading ${rest##*/}" ;;
      "Installing collected packages: "*)
        read -ra words <<<"${line#*: }"
        echo "   unpacking $(packages ${#words[@]}) ..." ;;
      "Successfully installed "*)
        read -ra words <<<"$line"
        echo "   installed $(packages $((${#words[@]} - 2)))" ;;
      ERROR:*) echo "   $line" ;;
    esac
  done
}

if [ ! -x .venv/bin/python ]; then
  step "Python environment: .venv/ (a few seconds)"
  # Debian and Ubuntu ship venv and ensurepip apart from Python itself.
  python3 -c "import ensurepip, venv" 2>/dev/null || apt_install python3-venv
  python3 -m venv .venv
  pip_install --upgrade pip
fi
if [ "$1" = "test" ] && [ -z "${TB_VARSCOPE_NO_TORCH:-}" ]; then
  # For the PyTorch writer tests (they skip without it; set TB_VARSCOPE_NO_TORCH=1 to leave it out). Pinned: these
  # machines carry this release's CPU build, while an open range pulls a newer multi-gigabyte CUDA build.
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    step "PyTorch 2.13, CPU build, for the PyTorch writer tests: a 190 MB wheel, 750 MB installed"
    pip_install "torch==2.13.0"
  fi
fi
case $1 in
  demo) step "tb-varscope, with TensorFlow 2.21, tf-keras and Keras 3 to train the demo"
    echo "   the first time: about 600 MB to download (TensorFlow is 570 MB), 2.2 GB installed; then in place" ;;
  test) step "tb-varscope, with what the tests use: TensorFlow 2.21, tf-keras, Keras 3, pytest, hypothesis,"
    echo "   ruff, mypy, playwright, tensorboardX, safetensors"
    echo "   the first time: about 700 MB to download (TensorFlow is 570 MB), 2.6 GB installed; then in place" ;;
esac
pip_install -e ".[$1]"
export PATH="$PWD/.venv/bin:$PATH"
