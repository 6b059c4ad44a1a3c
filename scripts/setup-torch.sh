#!/usr/bin/env bash
# Sets up the two PyTorch versions GradScope's tests run against (the torch version matrix):
# 1. the oldest supported: Debian's PyTorch (CPU, 1.13 on bookworm) for /usr/bin/python3, plus the
#    pthread OpenBLAS (Debian's default reference BLAS is ~10x slower). Needs root (or sudo).
# 2. current PyTorch 2.x with Lightning, transformers and accelerate, in a virtual environment
#    .venv-torch2/ of the repository (git-ignored), from scripts/requirements-torch2.txt; pip uses
#    whatever index this machine is configured with (here: a local wheel mirror).
# Idempotent: each part does nothing when its torch already imports. The `python3` first on PATH may
# be another interpreter without torch: GradScope's tests use /usr/bin/python3 (override with
# GRADSCOPE_TEST_PYTHON) and .venv-torch2/bin/python (override with GRADSCOPE_TEST_PYTHON2).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

PY=/usr/bin/python3
PKGS=(python3-torch libopenblas0-pthread)

have_all() {
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
  "$PY" -c 'import torch' >/dev/null 2>&1
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)

apt_install() {
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "setup-torch: need root (or sudo) to apt-get install $*" >&2
    exit 1
  fi
  if ! $SUDO apt-get install -y --no-install-recommends "$@"; then
    echo "setup-torch: install failed; refreshing the package lists and retrying" >&2
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "$@"
  fi
}

# 1. torch 1.13 (Debian) for /usr/bin/python3
if have_all; then
  echo "setup-torch: torch $("$PY" -c 'import torch; print(torch.__version__)') already installed for $PY"
else
  apt_install "${PKGS[@]}"
  "$PY" -c 'import torch; print("setup-torch: torch", torch.__version__, "for", __import__("sys").executable)'
fi

# 2. torch 2.x in .venv-torch2
VENV="$ROOT/.venv-torch2"
REQ="$ROOT/scripts/requirements-torch2.txt"
have_venv() {
  # torch imported; the others only looked up (importing transformers takes seconds).
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch, importlib.metadata as m; [m.version(p) for p in ("lightning", "transformers", "accelerate")]' >/dev/null 2>&1
}
have_all() {
  "$VENV/bin/python" -c 'import importlib.metadata as m, sys; [m.version(l.split("==")[0]) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]' "$REQ" >/dev/null 2>&1
}
if have_venv; then
  if ! have_all; then
    # (a requirement added since the venv was made: installed into it, torch kept)
    PIP_RETRIES="${PIP_RETRIES:-0}" PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install --quiet -r "$REQ" \
      2> >(grep -v "^WARNING: Location 'file:" >&2)
  fi
  echo "setup-torch: torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') already installed in $VENV"
else
  rm -rf "$VENV"
  if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian splits venv/ensurepip out of python3.
    rm -rf "$VENV"
    apt_install python3-venv
    "$PY" -m venv "$VENV"
  fi
  # PIP_RETRIES=0: an unreachable index fails fast instead of retrying for minutes.
  PIP_RETRIES="${PIP_RETRIES:-0}" PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install --quiet -r "$REQ" \
    2> >(grep -v "^WARNING: Location 'file:" >&2)
  "$VENV/bin/python" -c 'import torch, lightning, transformers; print("setup-torch: torch", torch.__version__, "lightning", lightning.__version__, "transformers", transformers.__version__, "in", __import__("sys").prefix)'
fi
echo "setup-torch: done in $(( $(date +%s) - start ))s"
