#!/usr/bin/env bash
# Quickstart 2: set up everything the tests need on a fresh machine, then run the whole suite (browser tests included).
set -eu
. "$(dirname "$0")/setup-env.sh" test
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
  step "Debian packages for the browser and frontend tests: ${missing[*]} (chromium: about 80 MB to download, 300 MB installed)"
  apt_install "${missing[@]}"
fi

step "ruff"
ruff check .
step "mypy"
mypy
step "frontend unit tests (node --test)"
if node --test tests/js/ >.venv/node-test.log 2>&1; then
  echo "node: $(sed -n 's/^# pass //p' .venv/node-test.log) passed, $(sed -n 's/^# fail //p' .venv/node-test.log) failed"
else
  cat .venv/node-test.log
  exit 1
fi
step "python tests (pytest; the first run trains the test scenarios' models: a few minutes)"
python -m pytest -q "$@"

if [ -z "${CI:-}" ]; then
  echo
  echo "Next: see the tool on real logs with bash scripts/demo.sh, or on yours with"
  echo "  .venv/bin/tb-varscope scan YOUR_LOGDIR"
fi
