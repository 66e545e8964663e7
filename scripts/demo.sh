#!/usr/bin/env bash
# Quickstart 1: set up, train the demo models (writing logs and checkpoints), scan them, open TensorBoard with the tab.
set -eu
. "$(dirname "$0")/setup-env.sh" demo

step "Training 4 tiny Keras models on CPU into demo-logs/ (about 15 s)"
# A second run must not add its event files beside the first one's: they would collide across files.
rm -rf demo-logs
python demo/train.py --logdir demo-logs --no-next

step "tb-varscope scan demo-logs (status 1: it found collisions, as the demo means it to)"
status=0
tb-varscope scan demo-logs || status=$?
[ "$status" -le 1 ] || exit "$status"

port="${PORT:-6006}"
step "TensorBoard with the VarScope tab: open http://localhost:$port/#varscope (Ctrl+C stops it)"
# TensorFlow's native libraries print start-up lines before any log level applies, once per library: drop just
# those, as demo/train.py does, and pass everything else TensorBoard says.
banners='^(WARNING: All log messages before absl::InitializeLog\(\) is called|[IWE][0-9]{4} [0-9:. ]+[0-9]+ (port|cudart_stub|cpu_feature_guard|cuda_platform)\.cc:[0-9]+\] )'
trap : INT # Ctrl+C stops TensorBoard; this script goes on to say what is next
status=0
tensorboard --logdir demo-logs --port "$port" 2> >(grep --line-buffered -vE "$banners" >&2) || status=$?
trap - INT
# Above 128 it was stopped by a signal (Ctrl+C is 130; TensorFlow's native code may crash while it exits).
if [ "$status" -ne 0 ] && [ "$status" -lt 128 ]; then
  echo "TensorBoard stopped with status $status (its message is above; if the port is taken: PORT=6007 bash $0)"
  exit "$status"
fi

echo
echo "Next: the command line is in .venv/bin (or run: source .venv/bin/activate). Try"
echo "  .venv/bin/tb-varscope scan demo-logs --verbose"
