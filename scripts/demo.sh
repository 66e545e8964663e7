#!/usr/bin/env bash
# Quickstart 1: set up, train the demo models (writing logs and checkpoints), scan them, open TensorBoard with the tab.
set -eu
. "$(dirname "$0")/setup-env.sh" demo
export TF_CPP_MIN_LOG_LEVEL=3
python demo/train.py --logdir demo-logs
echo
echo "== tb-varscope scan demo-logs"
tb-varscope scan demo-logs || true
port="${PORT:-6006}"
echo
echo "== TensorBoard with the VarScope tab: open http://localhost:$port/#varscope (Ctrl+C to stop)"
exec tensorboard --logdir demo-logs --port "$port"
