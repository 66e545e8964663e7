#!/usr/bin/env bash
# Quickstart 2: set up everything the tests need on a fresh machine, then run the whole suite (browser tests included).
set -eu
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
. scripts/setup-env.sh test
echo "== ruff"
ruff check .
echo "== frontend unit tests (node --test)"
node --test tests/js/
echo "== python tests (pytest)"
python -m pytest -q "$@"
