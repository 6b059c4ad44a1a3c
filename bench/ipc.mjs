// IPC throughput: a real child process writes protocol frames on fd 3 as fast as the pipe takes
// them (one STEP for 50 tensors plus 50 DETAIL frames with 32-bin histograms and 32×32 thumbnails
// per step), and this process decodes them with the real FrameDecoder. Prints frames/s, MB/s and
// host CPU per frame. Target ≥ 5,000 frames/s. Figures are printed, never asserted.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTs, repoRoot } from './lib/bundle.mjs';

const STEPS = Number(process.env.BENCH_IPC_STEPS ?? 400);
const TENSORS = 50;

export async function run() {
  const codec = await loadTs('src/core/protocol/codec.ts');
  const codecPath = join(repoRoot, 'bench', 'out', 'codec.cjs');
  // The writer: pre-encodes one step's frames (encoding is the probe's cost, measured elsewhere),
  // then writes them STEPS times, honouring back-pressure like the probe's socket does.
  const writer = join(repoRoot, 'bench', 'out', 'ipcWriter.cjs');
  writeFileSync(
    writer,
    `const net = require('node:net');
const c = require(${JSON.stringify(codecPath)});
const N = ${TENSORS}, STEPS = ${STEPS};
const stats = ['norm','maxAbs','nanCount','infCount','paramNorm','updateNorm'];
const frames = [];
let seq = 0;
frames.push(c.encodeMessage({ type: 'step', step: 0, loss: 1, wallMs: 0, nTensors: N, stats, columns: stats.map(() => Float64Array.from({ length: N }, (_, i) => i + 0.5)) }, seq++));
for (let t = 0; t < N; t++) frames.push(c.encodeMessage({ type: 'detail', step: 0, tensorId: t, mean: 0, std: 1, zeroFrac: 0, histLo: -20, histHi: 12, hist: new Uint32Array(32).fill(7), thumbRows: 32, thumbCols: 32, thumb: new Float32Array(1024).fill(0.5) }, seq++));
const block = Buffer.concat(frames);
const sock = new net.Socket({ fd: 3, readable: false, writable: true });
let i = 0;
function pump() { while (i < STEPS) { i++; if (!sock.write(block)) return sock.once('drain', pump); } sock.end(); }
pump();
`,
  );
  const child = spawn(process.execPath, [writer], { stdio: ['ignore', 'inherit', 'inherit', 'pipe'] });
  const dec = new codec.FrameDecoder();
  let frames = 0;
  let bytes = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await new Promise((resolve, reject) => {
    child.stdio[3].on('data', (chunk) => {
      bytes += chunk.length;
      const err = dec.push(chunk, () => frames++);
      if (err) reject(err);
    });
    child.stdio[3].on('close', resolve);
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const expected = STEPS * (TENSORS + 1);
  return {
    frames,
    expected,
    framesPerSec: frames / secs,
    mbPerSec: bytes / secs / 1e6,
    hostCpuMsPerFrame: (cpu.user + cpu.system) / 1000 / frames,
    stepsPerSec: STEPS / secs,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await run();
  console.log(`IPC (50-tensor steps with details, real child → fd 3 → FrameDecoder): ${r.frames}/${r.expected} frames`);
  console.log(
    `  ${r.framesPerSec.toFixed(0)} frames/s (target ≥ 5,000), ${r.mbPerSec.toFixed(1)} MB/s, ${r.stepsPerSec.toFixed(0)} steps/s, host CPU ${(r.hostCpuMsPerFrame * 1000).toFixed(1)} µs/frame`,
  );
}
