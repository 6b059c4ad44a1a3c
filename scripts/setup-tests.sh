#!/usr/bin/env bash
# What `npm test` needs besides node_modules, provisioned by `npm test` itself (idempotent: a few
# seconds when everything is there):
#   1. test/host/setup.sh        Debian's chromium, ripgrep, build tools; code-server for the VS Code suites
#   2. scripts/setup-torch.sh    Debian's torch 1.13 for /usr/bin/python3; torch 2.x in .venv-torch2/
#   3. test/fixtures/tfjs-published/*/  TF.js projects pinned as published ones are (tfjs 3.x), from npm
#   4. scripts/build-tfjs-node.sh  the native TF.js backend (tfjs-node built against the TensorFlow C
#      library of the tensorflow-cpu wheel) in ~/.cache/gradscope/tfjs-node-native
# Installing needs root (or sudo) and Debian's package source (and pip's index for torch 2.x). When
# a step cannot run, this says which one and why and exits non-zero: `npm test` never goes green
# with a suite skipped. GRADSCOPE_SKIP_SETUP=1 skips provisioning (the suites then fail loudly on
# whatever is missing).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${GRADSCOPE_SKIP_SETUP:-}" = "1" ]; then
  echo "setup-tests: skipped (GRADSCOPE_SKIP_SETUP=1)"
  exit 0
fi

start=$(date +%s)
step() {
  local name="$1"; shift
  local log
  log="$(mktemp)"
  if "$@" >"$log" 2>&1; then
    tail -n 2 "$log" | sed "s/^/  /"
    rm -f "$log"
    return 0
  fi
  echo "setup-tests: FAILED: $name ($*):" >&2
  tail -n 25 "$log" | sed "s/^/  | /" >&2
  rm -f "$log"
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "setup-tests: this step installs Debian packages and needs root (or sudo); run it once as root: $*" >&2
  else
    echo "setup-tests: check that Debian's package source (apt-get update) and pip's index are reachable, then run: $*" >&2
  fi
  exit 1
}

echo "setup-tests: browser and code-server for the VS Code suites"
step "the VS Code test host" bash test/host/setup.sh
echo "setup-tests: torch 1.13 and torch 2.x for the torch matrix"
step "the torch version matrix" bash scripts/setup-torch.sh
echo "setup-tests: TF.js projects pinned to older versions"
tfjs_projects() {
  local d
  for d in test/fixtures/tfjs-published/*/; do
    # (idempotent: a project already installed from its lockfile is left alone)
    if [ ! -f "$d/node_modules/.package-lock.json" ] || [ "$d/package-lock.json" -nt "$d/node_modules/.package-lock.json" ]; then
      (cd "$d" && npm ci --ignore-scripts --no-audit --no-fund) || return 1
    fi
    echo "  $d: installed"
  done
}
step "the pinned TF.js projects (npm ci in test/fixtures/tfjs-published/*)" tfjs_projects
echo "setup-tests: the native TF.js backend (tfjs-node, built from source)"
step "the native TF.js backend" bash scripts/build-tfjs-node.sh
echo "setup-tests: ready in $(( $(date +%s) - start ))s"
