#!/usr/bin/env bash
# Cloud TPU VM pod slice: run the same command on every host of the slice.
#
#   TPU_NAME=my-v5e-32 ZONE=us-west4-a CONFIG=configs/baseline_sr.py:paper WORKDIR=/mnt/shared/runs/sr \
#     launch/tpu_vm.sh [--config.x=y ...]
#
# Assumes the repository is checked out at ~/restore_jax on every host with the project installed
# (pip install -e . plus the TPU build of JAX: pip install "jax[tpu]"). JAX detects the pod topology:
# RESTORE_JAX_DISTRIBUTED=auto -> jax.distributed.initialize() with no arguments.
# WORKDIR must be a filesystem path every host sees (all hosts write checkpoints): e.g. a Filestore
# mount or a gcsfuse-mounted bucket. gs:// URLs are not accepted by the loop yet.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}"; : "${ZONE:?set ZONE}"
: "${CONFIG:?set CONFIG=configs/<method>.py:<preset>}"; : "${WORKDIR:?set WORKDIR}"
REPO_DIR="${REPO_DIR:-~/restore_jax}"
EXTRA=""
for a in "$@"; do EXTRA="$EXTRA $(printf '%q' "$a")"; done
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
  cd $REPO_DIR && RESTORE_JAX_DISTRIBUTED=auto python -m restore_jax.cli train \
    --config $(printf '%q' "$CONFIG") --workdir $(printf '%q' "$WORKDIR") $EXTRA"
