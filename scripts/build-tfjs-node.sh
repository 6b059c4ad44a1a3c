#!/usr/bin/env bash
# Builds the native TensorFlow.js CPU backend (@tensorflow/tfjs-node) without its install script,
# which downloads libtensorflow from a host this machine cannot reach. Instead:
#   1. `npm install --ignore-scripts @tensorflow/tfjs-node@4.22.0` into DEST (its package ships
#      binding.gyp and the N-API binding's C++ sources);
#   2. the TensorFlow C library is taken from the tensorflow-cpu wheel of pip's index (the local
#      wheel mirror here): libtensorflow_cc.so.2 exports the C and eager C APIs (TF_NewSession,
#      TFE_NewContext, … all that the binding calls), libtensorflow_framework.so.2 the rest, and the
#      wheel's include/ folder has the C headers. They go where binding.gyp looks: deps/lib (linked as
#      -ltensorflow, so libtensorflow.so points at libtensorflow_cc.so.2) and deps/include;
#   3. the binding is compiled with node-gyp (the copy bundled with npm) against Node's headers: those
#      installed with node (PREFIX/include/node, as Debian's and NodeSource's packages have them), or
#      else a folder assembled from the npm package node-api-headers (the binding uses N-API only);
#   4. the result is loaded: tf.getBackend() must be 'tensorflow'.
# tfjs-node 4.22 was made for libtensorflow 2.9; the C API it uses is unchanged in 2.21 (tested: dtypes,
# strings, conv/pool gradients against the cpu backend, layers fit, file:// save/load, tf.node.tensorBoard,
# PNG codecs).
#
# Usage: scripts/build-tfjs-node.sh [DEST]     (default DEST: $HOME/.cache/gradscope/tfjs-node-native)
# DEST/node_modules then holds @tensorflow/tfjs-node; link or copy it next to a script to use it.
# Idempotent: does nothing when DEST's tfjs-node already loads on the native backend. Environment:
#   TFJS_NODE_VERSION (4.22.0), TF_WHEEL_VERSION (2.21.0; "" for the newest the index has),
#   TF_WHEEL (a tensorflow or tensorflow-cpu wheel file to use instead of downloading one),
#   NODEDIR (a folder with include/node/node_api.h and common.gypi; "node-api-headers" to use that npm
#   package even when node's own headers are installed), JOBS (2).
# Needs: node, npm, python3 with pip, make, g++ (Debian: build-essential). Takes ~25 s and ~1.5 GB
# (the wheel is cached in DEST/.cache; libtensorflow_cc.so.2 alone is ~790 MB).
set -euo pipefail
start=$(date +%s)
DEST="$(mkdir -p "${1:-$HOME/.cache/gradscope/tfjs-node-native}" && cd "${1:-$HOME/.cache/gradscope/tfjs-node-native}" && pwd)"
TFJS_NODE_VERSION="${TFJS_NODE_VERSION:-4.22.0}"
TF_WHEEL_VERSION="${TF_WHEEL_VERSION-2.21.0}"
JOBS="${JOBS:-2}"
PKG="$DEST/node_modules/@tensorflow/tfjs-node"
CACHE="$DEST/.cache"
log() { echo "build-tfjs-node: $*"; }
die() {
  echo "build-tfjs-node: FAILED: $*" >&2
  exit 1
}

# Prints the backend and the TensorFlow version, or fails. Run in DEST so that require() finds DEST's copy.
check() {
  (cd "$DEST" && TF_CPP_MIN_LOG_LEVEL=2 node -e "
    const tf = require('@tensorflow/tfjs-node');
    if (tf.getBackend() !== 'tensorflow') throw new Error('backend is ' + tf.getBackend());
    const y = tf.tensor([[1, 2], [3, 4]]).matMul(tf.tensor([[1], [1]])).dataSync();
    if (y[0] !== 3 || y[1] !== 7) throw new Error('wrong matMul: ' + y);
    console.log(tf.getBackend(), 'tfjs-node', tf.version['tfjs-node'], 'TensorFlow', tf.backend().binding.TF_Version);
  " 2>&1 | grep -v -e '^I0000' -e '^WARNING: All log messages' -e '^To enable the following' -e 'rebuild TensorFlow with')
}

if [ -f "$PKG/package.json" ] && [ "$(node -p "require('$PKG/package.json').version")" = "$TFJS_NODE_VERSION" ] && out="$(check)"; then
  log "already built in $DEST: $out"
  exit 0
fi

for tool in node npm python3 make g++; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH (Debian: apt-get install build-essential python3-pip)"
done
NODE_GYP="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
[ -f "$NODE_GYP" ] || die "node-gyp not found next to npm ($NODE_GYP)"

# 1. The JavaScript package and the binding's sources, without the install script.
log "installing @tensorflow/tfjs-node@$TFJS_NODE_VERSION into $DEST (--ignore-scripts)"
[ -f "$DEST/package.json" ] || (cd "$DEST" && npm init -y >/dev/null)
(cd "$DEST" && npm install --ignore-scripts --no-audit --no-fund "@tensorflow/tfjs-node@$TFJS_NODE_VERSION" >/dev/null) || die "npm install @tensorflow/tfjs-node@$TFJS_NODE_VERSION"

# 2. The TensorFlow C library from a wheel.
mkdir -p "$CACHE"
wheel="${TF_WHEEL:-}"
if [ -z "$wheel" ]; then
  spec=""
  [ -n "$TF_WHEEL_VERSION" ] && spec="==$TF_WHEEL_VERSION"
  wheel="$(ls "$CACHE"/tensorflow*"${TF_WHEEL_VERSION:+-$TF_WHEEL_VERSION}"-*.whl 2>/dev/null | head -1 || true)"
  if [ -z "$wheel" ]; then
    for name in tensorflow-cpu tensorflow; do
      log "downloading the $name$spec wheel with pip"
      # The C library does not depend on the Python version: when the index has no wheel for this
      # python3, ask for a CPython 3.11/3.12 one.
      if PIP_RETRIES=0 python3 -m pip download --no-deps --only-binary=:all: -d "$CACHE" "$name$spec" >/dev/null 2>&1 ||
        PIP_RETRIES=0 python3 -m pip download --no-deps --only-binary=:all: --implementation cp --python-version 3.11 \
          --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 -d "$CACHE" "$name$spec" >/dev/null 2>&1 ||
        PIP_RETRIES=0 python3 -m pip download --no-deps --only-binary=:all: --implementation cp --python-version 3.12 \
          --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 -d "$CACHE" "$name$spec" >/dev/null 2>&1; then
        wheel="$(ls -t "$CACHE"/tensorflow*.whl | head -1)"
        break
      fi
    done
  fi
  [ -n "$wheel" ] || die "no tensorflow-cpu (or tensorflow) wheel$spec on pip's index (pip config list); set TF_WHEEL=path/to/wheel"
fi
log "TensorFlow C library from $(basename "$wheel")"
rm -rf "$PKG/deps"
mkdir -p "$PKG/deps/lib" "$PKG/deps/include"
# Only the headers the binding includes (tensorflow/c, the ctstring headers and what they include):
# the wheel's include/ is ~290 MB.
python3 - "$wheel" "$PKG/deps" <<'EOF' || die "extracting the C library from $wheel"
import os, shutil, sys, zipfile
wheel, deps = sys.argv[1], sys.argv[2]
libs = {'tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2'}
heads = ('tensorflow/include/tensorflow/c/', 'tensorflow/include/tensorflow/core/platform/', 'tensorflow/include/tsl/platform/', 'tensorflow/include/xla/tsl/c/')
found = set()
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        n = info.filename
        if n in libs:
            out = os.path.join(deps, 'lib', os.path.basename(n))
            found.add(n)
        elif n.startswith(heads) and n.endswith('.h'):
            out = os.path.join(deps, 'include', n[len('tensorflow/include/'):])
        else:
            continue
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, 'wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
missing = libs - found
if missing:
    sys.exit('the wheel has no ' + ', '.join(sorted(missing)))
EOF
for h in tensorflow/c/c_api.h tensorflow/c/eager/c_api.h; do
  [ -f "$PKG/deps/include/$h" ] || die "the wheel has no include/$h"
done
ln -sf libtensorflow_cc.so.2 "$PKG/deps/lib/libtensorflow.so"
ln -sf libtensorflow_framework.so.2 "$PKG/deps/lib/libtensorflow_framework.so"
# The binding calls these; a TensorFlow whose libtensorflow_cc does not export its C API would fail to link.
if command -v nm >/dev/null 2>&1; then
  # (To a file first: `nm | grep -q` fails under pipefail when grep stops reading early.)
  nm -D --defined-only "$PKG/deps/lib/libtensorflow_cc.so.2" "$PKG/deps/lib/libtensorflow_framework.so.2" >"$CACHE/exports.txt" 2>/dev/null || true
  for sym in TF_NewSession TFE_NewContext TFE_Execute TF_Version; do
    grep -qE " T $sym(@|\$)" "$CACHE/exports.txt" ||
      die "$sym is not exported by the wheel's libtensorflow_cc.so.2 / libtensorflow_framework.so.2"
  done
fi

# 3. Node's headers.
nodedir="${NODEDIR:-}"
if [ -z "$nodedir" ] || [ "$nodedir" = node-api-headers ]; then
  prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  if [ "$nodedir" != node-api-headers ] && [ -f "$prefix/include/node/node_api.h" ] && [ -f "$prefix/include/node/common.gypi" ]; then
    nodedir="$prefix"
  else
    # N-API headers from npm, and the few build settings node-gyp reads from Node's common.gypi.
    log "using the npm package node-api-headers for Node's headers (none under $prefix/include/node, or NODEDIR=node-api-headers)"
    nodedir="$CACHE/nodedir"
    rm -rf "$nodedir"
    mkdir -p "$nodedir/include/node" "$CACHE/nah"
    (cd "$CACHE/nah" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --ignore-scripts --no-audit --no-fund node-api-headers >/dev/null) || die "npm install node-api-headers"
    cp "$CACHE"/nah/node_modules/node-api-headers/include/*.h "$nodedir/include/node/"
    cat >"$nodedir/include/node/common.gypi" <<'EOF'
{
  'variables': { 'node_shared': 'false', 'node_module_version': '', 'clang': 0 },
  'target_defaults': {
    'default_configuration': 'Release',
    'configurations': { 'Release': { 'cflags': ['-O3'] }, 'Debug': { 'cflags': ['-g', '-O0'] } },
    'cflags': ['-pthread', '-fPIC', '-Wall', '-Wextra', '-Wno-unused-parameter'],
    'cflags_cc': ['-std=gnu++17', '-fno-rtti', '-fno-exceptions'],
    'ldflags': ['-pthread', '-rdynamic'],
  },
}
EOF
    echo "{ 'variables': {} }" >"$nodedir/include/node/config.gypi"
  fi
fi
log "Node headers from $nodedir/include/node"

# 4. Compile. node-pre-gyp (which the package's loader uses to find the binding) looks in
# lib/napi-v{N} for the highest N that both this Node and the package's binary.napi_versions list.
napi="$(node -p "Math.max(...require('$PKG/package.json').binary.napi_versions.filter((v) => v <= Number(process.versions.napi)))")"
log "compiling the N-API binding (napi-v$napi, -j$JOBS)"
(cd "$PKG" && node "$NODE_GYP" rebuild --nodedir="$nodedir" --jobs="$JOBS" \
  --module_name=tfjs_binding --module_path="$PKG/lib/napi-v$napi" --napi_build_version="$napi" >"$CACHE/node-gyp.log" 2>&1) ||
  {
    tail -30 "$CACHE/node-gyp.log" >&2
    die "node-gyp rebuild (full log: $CACHE/node-gyp.log)"
  }

# 5. Load it.
out="$(check)" || die "the built binding does not load: $out"
log "$out"
log "built in $DEST in $(($(date +%s) - start))s"
