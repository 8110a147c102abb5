#!/usr/bin/env bash
# Single machine, one process, all local devices (CPU, one or more GPUs, or a single TPU VM host).
#
#   launch/local.sh configs/baseline_sr.py:demo /tmp/demo [--config.x=y ...]
#
# Re-running the same command resumes from the latest good checkpoint in the workdir.
set -euo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: $0 CONFIG[:PRESET] WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
CONFIG="$1"; WORKDIR="$2"; shift 2
cd "$(dirname "$0")/.."
exec python -m restore_jax.cli train --config "$CONFIG" --workdir "$WORKDIR" "$@"
