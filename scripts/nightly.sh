#!/usr/bin/env bash
# Nightly processing: new batches in the inbox (and the samples sheet) are processed on the
# cluster; finished batches are not recomputed; a failing batch does not stop the others.
#
#   scripts/nightly.sh [extra snakemake arguments]
#
# Settings: CELLSPOT_WORKDIR (the deployed workflow folder; default: this repo),
# CELLSPOT_PROFILE (default profiles/slurm), CELLSPOT_PYTHON (default .venv/bin/python of this repo).
# Writes results/nightly/<stamp>.snakemake.log and <stamp>.status.tsv (what was processed, what
# failed and why). Exit status: 0 all batches complete, 1 some failed, 75 another run was active.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKDIR=${CELLSPOT_WORKDIR:-$ROOT}
PROFILE=${CELLSPOT_PROFILE:-profiles/slurm}
PY=${CELLSPOT_PYTHON:-$ROOT/.venv/bin/python}
cd "$WORKDIR" || exit 2
mkdir -p results/nightly
stamp=$(date +%Y%m%d-%H%M%S)

# One run at a time: the lock is held by this shell (fd 9) until it exits, even if killed.
exec 9>"results/nightly/.lock"
if ! flock -n 9; then
  echo "[nightly $stamp] another nightly run is active (results/nightly/.lock); not starting" >&2
  exit 75
fi
# Our flock proves no other *nightly* run is alive; a Snakemake started by hand in this folder
# holds Snakemake's lock without ours, so look for one before calling a lock stale. (Only this
# host is seen: a run by hand on another login node is not, and then Snakemake's lock stops us.)
if active=$("$PY" -m cellspot.cli runs --directory "$WORKDIR"); then
  "$PY" -m snakemake -s "$ROOT/Snakefile" --unlock >/dev/null 2>&1 || true
else
  echo "[nightly $stamp] a Snakemake run is active in $WORKDIR (pid $(echo $active)); not starting" >&2
  exit 75
fi

echo "[nightly $stamp] starting: $(date -Is), profile $PROFILE" >&2
"$PY" -m snakemake -s "$ROOT/Snakefile" --profile "$ROOT/$PROFILE" --keep-going \
  --rerun-incomplete "$@" >"results/nightly/$stamp.snakemake.log" 2>&1
rc=$?
"$PY" -m cellspot.cli status --output "results/nightly/$stamp.status.tsv"
src=$?
if [ -f "results/nightly/$stamp.status.tsv" ]; then
  echo "[nightly $stamp] snakemake exit $rc; status in results/nightly/$stamp.status.tsv" >&2
else  # status could not even read the batches (its error is above)
  echo "[nightly $stamp] snakemake exit $rc; no status table (cellspot status exit $src)" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || exit 1
