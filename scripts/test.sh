#!/usr/bin/env bash
# Quickstart 2: set up everything the tests need on a fresh machine, then run the whole suite (browser tests included).
set -eu
. "$(dirname "$0")/setup-env.sh" test
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi
echo "== ruff"
ruff check .
echo "== mypy"
mypy
echo "== frontend unit tests (node --test)"
node --test tests/js/
echo "== python tests (pytest)"
python -m pytest -q "$@"
