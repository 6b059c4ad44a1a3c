#!/usr/bin/env bash
# Prepares the machine for the extension-host test suite (`npm run test:host`): a real VS Code
# (code-server 4.100.3 from npm, which bundles VS Code 1.100.3) driven by Debian's chromium.
# Idempotent; run as root. Needs only Debian's apt mirror and the npm registry
# (see docs in test/host/README.md and ../shared/guides/vscode-e2e.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# 1. System packages: the browser, kerberos headers (code-server's `kerberos` builds from source
#    when its prebuild download fails), ripgrep (instead of @vscode/ripgrep's GitHub download), and
#    a compiler for the native modules (node-pty, kerberos, …).
need=()
for p in chromium libkrb5-dev ripgrep build-essential; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "setup.sh: need root to apt-get install ${need[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# 2. Seed @vscode/ripgrep's download cache with Debian's rg, so its postinstall finds the archive
#    it would otherwise fetch from GitHub. (It checks os.tmpdir(), i.e. $TMPDIR or /tmp.)
cache="${TMPDIR:-/tmp}/vscode-ripgrep-cache-1.15.11"
tarball="$cache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
if [ ! -s "$tarball" ]; then
  mkdir -p "$cache"
  work="$(mktemp -d)"
  cp "$(command -v rg)" "$work/rg"
  tar -C "$work" -czf "$tarball" rg
  rm -rf "$work"
fi

# 3. code-server, in test/host's own node_modules (its .npmrc carries unsafe-perm, nodedir, yes).
cd "$here"
stamp="node_modules/.gradscope-installed"
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ ! -x node_modules/.bin/code-server ]; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
  touch "$stamp"
fi
echo "setup.sh: ready (code-server $(node -p "require('./node_modules/code-server/package.json').version"))"
