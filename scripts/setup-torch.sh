#!/usr/bin/env bash
# Installs Debian's PyTorch (CPU, 1.13 on bookworm) for /usr/bin/python3, plus the pthread OpenBLAS
# (Debian's default reference BLAS is ~10x slower). Idempotent: does nothing when torch already
# imports. Needs root (or sudo). The `python3` first on PATH may be another interpreter without
# torch: GradScope's tests use /usr/bin/python3 (override with GRADSCOPE_TEST_PYTHON).
set -euo pipefail

PY=/usr/bin/python3
PKGS=(python3-torch libopenblas0-pthread)

have_all() {
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
  "$PY" -c 'import torch' >/dev/null 2>&1
}

if have_all; then
  echo "setup-torch: torch $("$PY" -c 'import torch; print(torch.__version__)') already installed for $PY"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup-torch: need root (or sudo) to apt-get install ${PKGS[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
if ! $SUDO apt-get install -y --no-install-recommends "${PKGS[@]}"; then
  echo "setup-torch: install failed; refreshing the package lists and retrying" >&2
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${PKGS[@]}"
fi
"$PY" -c 'import torch; print("setup-torch: torch", torch.__version__, "for", __import__("sys").executable)'
echo "setup-torch: done in $(( $(date +%s) - start ))s"
