#!/usr/bin/env bash
# `make push`: commit dvc.lock if the pipeline changed it, then `dvc push` (extra arguments go to dvc push).
# dvc.lock names the exact outputs in the remote, so a clone can only `dvc pull` what a commit records:
# the lock is committed first, and nothing else is (your other changes stay as they are).
set -euo pipefail
if ! git diff --quiet HEAD -- dvc.lock 2>/dev/null || [ -z "$(git ls-files dvc.lock)" ]; then
  git add dvc.lock
  git commit --quiet -m "dvc.lock: outputs pushed to the DVC remote" -- dvc.lock
  echo "committed dvc.lock ($(git rev-parse --short HEAD))"
fi
dvc push "$@"
