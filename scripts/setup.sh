#!/usr/bin/env bash
# cellspot set-up: one command installs everything into ./.venv on Debian/Ubuntu.
#
#   bash scripts/setup.sh
#
# Idempotent and fast on a second run: the mmcv wheel (a ~30 min source build when no
# prebuilt wheel fits the torch in use) and btrack's tracker library are built once and
# cached under $CELLSPOT_CACHE (default ~/.cache/cellspot), keyed by Python and torch version.
#
# Settings (environment variables):
#   CELLSPOT_TORCH        pip requirement for torch (default torch==2.13.0, a CPU build here;
#                         on a GPU cluster e.g. "torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124")
#   CELLSPOT_VENV         virtual environment path (default ./.venv)
#   CELLSPOT_CACHE        wheel cache (default ~/.cache/cellspot)
#   CELLSPOT_APT=0        skip Debian packages (no root)
#   CELLSPOT_EXTRAS       pip extras of cellspot to install (default "test": tests, lint, bench)
#   MAX_JOBS              parallel compile jobs for mmcv (default: nproc)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${CELLSPOT_VENV:-$ROOT/.venv}
CACHE=${CELLSPOT_CACHE:-$HOME/.cache/cellspot}
TORCH_REQ=${CELLSPOT_TORCH:-torch==2.13.0}
EXTRAS=${CELLSPOT_EXTRAS:-test}
PYTHON=${PYTHON:-python3}
log() { printf '[setup %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ------------------------------------------------------------ Debian packages
APT_PKGS="libeigen3-dev build-essential libgl1 libglib2.0-0 chromium chromium-driver"
if [ "${CELLSPOT_APT:-1}" = 1 ] && command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
  missing=""
  for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    log "apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
elif [ "${CELLSPOT_APT:-1}" = 1 ]; then
  log "not root: skipping Debian packages ($APT_PKGS); install them yourself if missing"
fi

# ------------------------------------------------------------ venv and torch
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PY="$VENV/bin/python"
pip_q() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }
"$PY" -c 'import wheel, ninja' 2>/dev/null || pip_q "setuptools<70" wheel ninja
# shellcheck disable=SC2086
"$PY" -c 'import torch' 2>/dev/null || { log "installing $TORCH_REQ"; pip_q $TORCH_REQ; }
KEY=$("$PY" -c 'import sys, torch; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}")')
WHEELS="$CACHE/wheels/$KEY"
mkdir -p "$WHEELS"

# ------------------------------------------------------------ mmcv 2.1.0 (ops compiled)
if ! "$PY" -c 'import mmcv, mmcv.ops' 2>/dev/null; then
  if ! ls "$WHEELS"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    log "building mmcv 2.1.0 for $KEY (once; about 30 min on 2 cores)"
    # mmcv's setup.py imports pkg_resources (gone in setuptools>=70).
    pip_q "setuptools<70" wheel ninja "numpy<2.5"
    tmp=$(mktemp -d "$WHEELS/.build.XXXX")
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel -q --no-deps \
      --no-build-isolation mmcv==2.1.0 -w "$tmp"
    mv "$tmp"/mmcv-*.whl "$WHEELS"/ && rm -rf "$tmp"
  fi
  pip_q --no-deps "$WHEELS"/mmcv-2.1.0-*.whl
fi

# ------------------------------------------------------------ cellspot and its Python stack
# Exact pins live in requirements/constraints.txt (the same versions as envs/*.yaml).
if ! "$PY" -c 'import cellspot, mmdet, btrack, snakemake' 2>/dev/null \
   || [ "$ROOT/pyproject.toml" -nt "$VENV/.cellspot-installed" ] \
   || [ "$ROOT/requirements/constraints.txt" -nt "$VENV/.cellspot-installed" ]; then
  log "installing cellspot[$EXTRAS] and its dependencies"
  pip_q -c "$ROOT/requirements/constraints.txt" -e "$ROOT[$EXTRAS]"
  touch "$VENV/.cellspot-installed"
fi

# ------------------------------------------------------------ btrack's tracker library
# The btrack 0.7.0 wheel's libtracker.so needs GLIBCXX_3.4.32 (GCC 13); Debian 12 and RHEL 8/9
# have older libstdc++. Rebuild it from the sdist against this machine's compiler, once.
BT_CHECK='from btrack import libwrapper; libwrapper.get_library()'
if ! "$PY" -c "$BT_CHECK" >/dev/null 2>&1; then
  BT_VER=$("$PY" -c 'import importlib.metadata as m; print(m.version("btrack"))')
  GCC_VER=$(g++ -dumpfullversion 2>/dev/null || echo unknown)
  BT_LIB="$CACHE/btrack/$BT_VER-gcc$GCC_VER/libtracker.so"
  if [ ! -s "$BT_LIB" ]; then
    log "building btrack $BT_VER libtracker.so with g++ $GCC_VER"
    src=$(mktemp -d)
    "$PY" -m pip download -q --no-deps --no-binary :all: "btrack==$BT_VER" -d "$src"
    tar xzf "$src"/btrack-"$BT_VER".tar.gz -C "$src"
    ( cd "$src/btrack-$BT_VER" \
      && ln -sfn /usr/include/eigen3 btrack/include/eigen \
      && rm -f btrack/libs/libtracker.* && mkdir -p btrack/obj \
      && make -s -j"$(nproc)" >/dev/null )
    mkdir -p "$(dirname "$BT_LIB")"
    cp "$src/btrack-$BT_VER/btrack/libs/libtracker.so" "$BT_LIB.tmp" && mv "$BT_LIB.tmp" "$BT_LIB"
    rm -rf "$src"
  fi
  BT_DIR=$("$PY" -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("btrack").origin))')
  cp "$BT_LIB" "$BT_DIR/libs/libtracker.so"
  "$PY" -c "$BT_CHECK" || { log "ERROR: btrack's tracker library does not load"; exit 1; }
fi

log "checking the stack"
"$PY" - <<'PY'
import torch, mmcv, mmcv.ops, mmdet, mmengine, btrack, snakemake, zarr, ome_zarr
from btrack import libwrapper
libwrapper.get_library()  # loads libtracker.so: fails if it needs a newer libstdc++
print(f"torch {torch.__version__} (cuda: {torch.cuda.is_available()}), mmcv {mmcv.__version__}, "
      f"mmdet {mmdet.__version__}, mmengine {mmengine.__version__}, btrack {btrack.__version__}, "
      f"snakemake {snakemake.__version__}, zarr {zarr.__version__}")
PY
log "done: activate with 'source $VENV/bin/activate'"
