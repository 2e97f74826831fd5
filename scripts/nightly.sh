#!/usr/bin/env bash
# Nightly processing: new batches in the inbox (and the samples sheet) are processed on the
# cluster; finished batches are not recomputed; a failing batch does not stop the others.
#
#   scripts/nightly.sh [extra snakemake arguments]
#
# Settings: CELLSPOT_WORKDIR (the deployed workflow folder; default: this repo),
# CELLSPOT_PROFILE (default profiles/slurm), CELLSPOT_PYTHON (default .venv/bin/python of this repo).
# Writes results/nightly/<stamp>.snakemake.log and <stamp>.status.tsv (what was processed, what
# failed and why). Exit status: 0 all batches complete, 1 some failed, 2 no cellspot Python
# (setup not run) or no such folder, 75 another run was active.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKDIR=${CELLSPOT_WORKDIR:-$ROOT}
PROFILE=${CELLSPOT_PROFILE:-profiles/slurm}
PY=${CELLSPOT_PYTHON:-$ROOT/.venv/bin/python}
if [ ! -x "$PY" ]; then
  echo "[nightly] $PY not found: run scripts/setup.sh, or set CELLSPOT_PYTHON" >&2
  exit 2
fi
cd "$WORKDIR" || exit 2
mkdir -p results/nightly
stamp=$(date +%Y%m%d-%H%M%S)

# One run at a time: the lock is held by this shell (fd 9) until it exits, even if killed.
exec 9>"results/nightly/.lock"
if ! flock -n 9; then
  echo "[nightly $stamp] another nightly run is active (results/nightly/.lock); not starting" >&2
  exit 75
fi
# Our flock proves no other *nightly* run is alive, but a Snakemake started by hand holds
# Snakemake's lock without ours. A lock is cleared only when it is provably stale: no Snakemake
# alive in this folder on this host, and the lock was taken by a nightly on this host whose shell
# is gone (results/nightly/.owner: host and pid). Any other lock (a run by hand, maybe on another
# login node) is left alone: nothing is ever processed twice; `snakemake --unlock` clears it.
if ! active=$("$PY" -m cellspot.cli runs --directory "$WORKDIR"); then
  echo "[nightly $stamp] a Snakemake run is active in $WORKDIR (pid $(echo $active)); not starting" >&2
  exit 75
fi
if [ -n "$(ls -A .snakemake/locks 2>/dev/null)" ]; then
  read -r owner_host owner_pid < results/nightly/.owner 2>/dev/null || owner_host=""
  if [ "$owner_host" = "$(uname -n)" ] && ! kill -0 "$owner_pid" 2>/dev/null; then
    echo "[nightly $stamp] clearing the lock left by a killed nightly (pid $owner_pid)" >&2
    "$PY" -m snakemake -s "$ROOT/Snakefile" --unlock >/dev/null 2>&1 || true
  else
    echo "[nightly $stamp] Snakemake's lock in $WORKDIR/.snakemake/locks was not left by a" \
      "nightly on this host (a run by hand, or on another node?); not starting. If no run is" \
      "alive, clear it with: snakemake --unlock" >&2
    exit 75
  fi
fi
echo "$(uname -n) $$" > results/nightly/.owner

echo "[nightly $stamp] starting: $(date -Is), profile $PROFILE" >&2
"$PY" -m snakemake -s "$ROOT/Snakefile" --profile "$ROOT/$PROFILE" --keep-going \
  --rerun-incomplete "$@" >"results/nightly/$stamp.snakemake.log" 2>&1
rc=$?
rm -f results/nightly/.owner  # Snakemake has released its lock (or left it stale if killed)
"$PY" -m cellspot.cli status --output "results/nightly/$stamp.status.tsv"
src=$?
if [ -f "results/nightly/$stamp.status.tsv" ]; then
  echo "[nightly $stamp] snakemake exit $rc; status in results/nightly/$stamp.status.tsv" >&2
else  # status could not even read the batches (its error is above)
  echo "[nightly $stamp] snakemake exit $rc; no status table (cellspot status exit $src)" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || exit 1
