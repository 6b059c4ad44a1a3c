// The tfjs runner: the child process's entry point, started by the host as
//   node --enable-source-maps dist/probe/tfjs/runner.js <abs script> [args…]
// or by hand on another machine, streaming to `gradscope listen` there (./remote.ts):
//   GRADSCOPE_TOKEN=… node dist/probe/tfjs/runner.js --connect HOST:PORT <script> [args…]
// with a socket to the host on the descriptor GRADSCOPE_CHANNEL_FD names (15: src/process/channelFd.ts
// says why). Like a debugger's bootloader it prepares everything first — channel, backend (awaited:
// wasm must be ready before any user op), module redirects, hooks, HELLO — and only then runs the
// user's script, unchanged, as the main module.
//
// Without GRADSCOPE_CHANNEL_FD the script runs on the same backend with no hooks (the benchmark's
// baseline). The probe never writes to stdout; on stderr only the one backend line and real
// warnings. Its own failures become EVENT warnings; the user's errors stay the user's (Node prints
// them and exits 1 as usual; we only observe them to send END crashed).
import Module from 'node:module';
import { extname, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { readFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { selectBackend, type BackendSelection } from './backend';
import { stopOwnGroup } from './group';
import { Probe } from './probe';
import { ESM_SHIM_SOURCE, installNodeFallback } from './nodeFallback';
import { installResolution } from './resolve';
import { findBabelProject, installBabel } from './babel';
import { installLocate } from './locate';
import { connectRemote, loud, parseAddress } from './remote';
import { hostname } from 'node:os';

function envInt(name: string): number {
  const v = Number(process.env[name] ?? '');
  return Number.isFinite(v) && v > 0 ? Math.floor(v) : 0;
}

function isEsm(file: string): boolean {
  const ext = extname(file);
  if (ext === '.mjs' || ext === '.mts') return true;
  if (ext === '.cjs' || ext === '.cts') return false;
  for (let d = dirname(file); ; d = dirname(d)) {
    try {
      return (JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')) as { type?: string }).type === 'module';
    } catch {
      /* up */
    }
    if (dirname(d) === d) return false;
  }
}

async function main(): Promise<void> {
  let argv = process.argv.slice(2);
  let connectTo: string | null = null;
  if (argv[0] === '--connect') {
    connectTo = argv[1] ?? '';
    argv = argv.slice(2);
  } else if (argv[0]?.startsWith('--connect=')) {
    connectTo = argv[0].slice('--connect='.length);
    argv = argv.slice(1);
  }
  const [scriptArg, ...args] = argv;
  if (!scriptArg) {
    process.stderr.write('usage: runner.js [--connect HOST:PORT] <script> [args…]   (--connect: stream to `gradscope listen`, token in GRADSCOPE_TOKEN)\n');
    process.exit(2);
  }
  if (connectTo !== null) {
    try {
      parseAddress(connectTo);
    } catch (e) {
      process.stderr.write(`runner.js: ${(e as Error).message}\n`);
      process.exit(2);
    }
  }
  const script = resolvePath(scriptArg);
  // The script must see `node <script> args…`.
  process.argv = [process.argv[0], script, ...args];

  const fdRaw = process.env.GRADSCOPE_CHANNEL_FD;
  const channelFd = fdRaw !== undefined && fdRaw !== '' && Number.isInteger(Number(fdRaw)) ? Number(fdRaw) : null;
  const maxSteps = envInt('GRADSCOPE_MAX_STEPS');
  const detailEvery = envInt('GRADSCOPE_DETAIL_EVERY');
  const weightsEvery = envInt('GRADSCOPE_SAMPLED_EVERY');
  const force = process.env.GRADSCOPE_BACKEND;
  const statsMode = (process.env.GRADSCOPE_STATS ?? '') as 'host' | 'inline' | 'device' | '';
  const locateNan = envInt('GRADSCOPE_LOCATE_NAN') > 0;
  const token = process.env.GRADSCOPE_TOKEN ?? '';
  // The script (and anything it spawns) should not inherit the probe's settings.
  for (const k of [
    'GRADSCOPE_TOKEN',
    'GRADSCOPE_CHANNEL_FD',
    'GRADSCOPE_MAX_STEPS',
    'GRADSCOPE_DETAIL_EVERY',
    'GRADSCOPE_SAMPLED_EVERY',
    'GRADSCOPE_BACKEND',
    'GRADSCOPE_STATS',
    'GRADSCOPE_LOCATE_NAN',
  ])
    delete process.env[k];

  let probe: Probe | null = null;
  remoteMode = connectTo !== null;
  if (connectTo !== null) probe = await startRemote(connectTo, token, { script, maxSteps, detailEvery, weightsEvery, statsMode });
  else if (channelFd !== null) {
    try {
      probe = new Probe({
        channelFd,
        script,
        maxSteps,
        detailEvery,
        weightsEvery,
        statsMode,
        // Watchdog: the host is gone, nobody will read our frames or stop us: stop now, with what
        // the script started (the host would have stopped the whole group; it cannot any more).
        onHostGone: (why) => {
          say(`[gradscope] ${why}: stopping the script\n`);
          stopGroupOnce();
          process.exit(1);
        },
      });
    } catch (e) {
      process.stderr.write(`[gradscope] warning: cannot open the channel on fd ${channelFd} (${(e as Error).message}); running without inspection\n`);
      probe = null;
    }
  }

  // Source maps (the host passes --enable-source-maps so that a .ts script's stacks show its .ts
  // lines) are off while tfjs loads: Node parses a module's map when it loads it, tfjs's come to
  // ~10 MB and cost ~110 ms of start-up, and they point at sources that are not on disk (a plain
  // `node script.js` shows tfjs's own files too). On again before anything of the user's loads.
  const maps = process.sourceMapsEnabled;
  if (maps) process.setSourceMapsEnabled(false);
  let sel: BackendSelection | null = null;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a path resolved at run time (the user's tfjs), not a module of ours
    sel = await selectBackend(script, { force, load: (p): unknown => require(p) });
  } catch (e) {
    const msg = `could not prepare TensorFlow.js: ${(e as Error).message}`;
    process.stderr.write(`[gradscope] warning: ${msg}\n`);
    probe?.hello(null, msg);
  }

  if (sel) {
    const redirects: Record<string, string> = { '@tensorflow/tfjs': sel.tfjsPath };
    const esmRedirects: Record<string, string> = {};
    for (const spec of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const) {
      if (sel.nativePackage !== spec) redirects[spec] = sel.tfPath;
    }
    if (!sel.nativePackage) {
      // No tfjs-node here: what scripts written for it use besides tfjs (file:// saving, tf.node).
      try {
        installNodeFallback(sel.tf, sel.reason);
        const shim = `data:text/javascript,${encodeURIComponent(ESM_SHIM_SOURCE)}`;
        for (const spec of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) esmRedirects[spec] = shim;
      } catch (e) {
        process.stderr.write(`[gradscope] warning: tfjs-node's file:// saving and tf.node are not available (${(e as Error).message})\n`);
      }
    }
    try {
      installResolution({ redirects, esmRedirects });
    } catch (e) {
      process.stderr.write(`[gradscope] warning: module redirection failed (${(e as Error).message})\n`);
    }
    process.stderr.write(`[gradscope] ${sel.reason} (${sel.device})\n`);
    if (probe) {
      probe.hello(sel);
      try {
        probe.start(sel);
      } catch (e) {
        probe.warn('start', e);
      }
      if (locateNan) {
        // Locate mode (the host's locate-nan re-run): check every kernel's output (./locate.ts).
        const p = probe;
        try {
          installLocate(sel.tf, (m) => p.info(m));
        } catch (e) {
          probe.warn('locate mode', e);
        }
      }
    }
  }

  if (maps) process.setSourceMapsEnabled(true);
  if (probe) installLifecycle(probe);
  const esm = isEsm(script);
  if (!esm) {
    const babel = findBabelProject(script);
    if (babel) {
      try {
        const how = installBabel(babel, script);
        const msg =
          how === 'babel'
            ? `Babel project (${babel.config}): its files compiled by its own @babel/register`
            : `Babel project (${babel.config}) without @babel/register installed: its import/export compiled to CommonJS by GradScope (Sucrase); other Babel plugins are not applied`;
        process.stderr.write(`[gradscope] ${msg}\n`);
        probe?.info(msg);
      } catch (e) {
        process.stderr.write(`[gradscope] warning: the Babel project's files could not be set up for compiling (${(e as Error).message})\n`);
      }
    }
  }
  runScript(script, esm);
}

/**
 * --connect: the handshake before the script starts. Any failure (refused, nobody listening) and the
 * script runs unobserved with a loud warning; a connection lost later, the same: a monitoring failure
 * never stops the training (docs/protocol.md "Remote runs").
 */
async function startRemote(
  address: string,
  token: string,
  o: Pick<ConstructorParameters<typeof Probe>[0], 'script' | 'maxSteps' | 'detailEvery' | 'weightsEvery' | 'statsMode'>,
): Promise<Probe | null> {
  let fd: number;
  try {
    fd = await connectRemote(address, token);
  } catch (e) {
    const hint = token ? '' : ' (GRADSCOPE_TOKEN is not set: set it to the token `gradscope listen` printed)';
    loud(`${(e as Error).message}${hint}; the script runs without inspection`, say);
    return null;
  }
  let probe: Probe | null = null;
  try {
    probe = new Probe({
      ...o,
      channelFd: fd,
      host: hostname(),
      onHostGone: (why) => loud(`the connection to GradScope at ${address} was lost after ${probe?.stepsSeen ?? 0} step(s) (${why}): the script goes on training, unobserved`, say),
    });
  } catch (e) {
    loud(`cannot use the connection to ${address} (${(e as Error).message}); the script runs without inspection`, say);
    return null;
  }
  say(`[gradscope] connected to GradScope at ${address}: this run is observed there\n`);
  return probe;
}

/** Writes to stderr synchronously, never throwing (the host, and so stderr's reader, may be gone). */
function say(text: string): void {
  try {
    writeSync(2, text);
  } catch {
    // nobody to tell
  }
}

/** Started with --connect: the host going away never stops anything here. */
let remoteMode = false;
/** The host that spawned the runner (its parent, unless a wrapper such as a version-manager shim stands between). */
const parentAtStart = process.ppid;
let groupStopped = false;
function stopGroupOnce(): void {
  if (groupStopped) return;
  groupStopped = true;
  stopOwnGroup();
}

function installLifecycle(probe: Probe): void {
  // A non-zero process.exit() from the script: remember where, for END.
  let exitCall: Error | null = null;
  const realExit = process.exit.bind(process);
  process.exit = (code?: number | string | null) => {
    const c = code ?? process.exitCode;
    if (c !== undefined && c !== null && Number(c) !== 0 && !exitCall) exitCall = new Error(`the script called process.exit(${c})`);
    return realExit(code);
  };

  // Observes uncaught errors without changing what Node does with them (print, exit 1).
  process.on('uncaughtExceptionMonitor', (err) => {
    if (process.listenerCount('uncaughtException') > 0) return; // the script handles its own
    probe.finish('crashed', err);
  });
  process.on('exit', (code) => {
    // The script ends after the host died but before the hang-up was seen (the watch timer had not
    // looked since, or the script never yielded to it): nobody else will stop what it started. That
    // comes first: finish() may wait up to seconds for the stats worker (a loaded machine), for
    // frames nobody will read, and the host would have stopped the group at once. The host is gone
    // when this process was handed to another parent, or on end-of-file on the channel: the first
    // can come a moment before the second (measured: the new parent already there, the channel not
    // yet at end-of-file, 1 run in ~10 under load), so both are asked. (Not in remote mode: the
    // runner was started by hand there, its group is the user's shell job.)
    if (!remoteMode && (process.ppid !== parentAtStart || probe.channel.hostGoneNow())) stopGroupOnce();
    if (code === 0) probe.finish('completed');
    else probe.finish('crashed', exitCall ?? new Error(`the script exited with code ${code}`));
  });
}

function runScript(script: string, esm: boolean): void {
  // Run from a fresh macrotask so a synchronous throw is a genuine uncaught exception (Node's own
  // message, exit code 1), not a rejection of main()'s promise.
  setImmediate(() => {
    if (esm) {
      import(pathToFileURL(script).href).catch((e: unknown) =>
        process.nextTick(() => {
          throw e;
        }),
      );
    } else {
      // The CommonJS main module, as `node script.js` would load it (require.main === module).
      (Module as unknown as { runMain(main?: string): void }).runMain(script);
    }
  });
}

main().catch((e) => {
  process.stderr.write(`[gradscope] warning: the probe failed to start (${(e as Error)?.stack ?? e})\n`);
});
