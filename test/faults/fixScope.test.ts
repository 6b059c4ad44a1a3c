// Fault row 2: `gradscope fix` edits only the run's script (or a file next to it that the run's
// source map names), asks before editing anything else, and `--verify` never writes an edit it
// could not verify. Real CLI processes, real run files, real scripts; user files compared byte for byte.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { readRunFile } from '../../src/core/store/runFile';
import { bin, caseDir, copyExample, gradscope, hasStack, leftRunning, runFilesIn, sha256 } from './support';

/**
 * Runs `gradscope fix …` on a pseudo-terminal (Python's pty: Node has none built in) and types
 * `keys` at the "[y/N]" prompt. Null when python3 is not there.
 */
function fixOnTerminal(args: string[], cwd: string, keys: string): { code: number; out: string } | null {
  const driver = [
    'import os, pty, sys, time, select, json',
    'pid, fd = pty.fork()',
    'if pid == 0:',
    '    os.execv(sys.argv[1], sys.argv[1:])',
    "out = b''",
    'sent = False',
    't0 = time.time()',
    'while time.time() - t0 < 60:',
    '    r, _, _ = select.select([fd], [], [], 0.2)',
    '    if r:',
    '        try: d = os.read(fd, 4096)',
    '        except OSError: break',
    '        if not d: break',
    '        out += d',
    "        if b'[y/N]' in out and not sent:",
    '            os.write(fd, os.environ["KEYS"].encode()); sent = True',
    '_, st = os.waitpid(pid, 0)',
    "print(json.dumps({'code': os.waitstatus_to_exitcode(st), 'out': out.decode('utf8', 'replace')}))",
  ].join('\n');
  const r = spawnSync('python3', ['-c', driver, process.execPath, bin, ...args], { cwd, encoding: 'utf8', env: { ...process.env, KEYS: keys }, timeout: 90_000 });
  if (r.error || r.status !== 0) return null;
  return JSON.parse(r.stdout) as { code: number; out: string };
}

// A project in one folder, recorded once; the fix is then asked for from elsewhere.
const project = caseDir('scope-project');
const script = copyExample('exploding-mlp.js', project, 'train.js');
let runFile = '';

before(async () => {
  const r = await gradscope(['run', 'train.js', '--steps', '12', '--out', 'runs'], { cwd: project });
  assert.equal(r.code, 0, r.stderr);
  [runFile] = runFilesIn(join(project, 'runs'));
  assert.ok(runFile, 'the project run left a run file');
  assert.equal(readRunFile(runFile).meta.script, script);
});

describe('fault 2: a fix stays in the run it came from', () => {
  it('refuses (exit 3) to edit a script outside the current folder that only a run file names; the script is byte-identical', async () => {
    const elsewhere = caseDir('scope-elsewhere');
    const sum = sha256(script);
    const r = await gradscope(['fix', '--from-run', runFile], { cwd: elsewhere });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /not written: .*train\.js lies outside .*only the run file names it.*--allow-outside/);
    assert.ok(!hasStack(r.stderr), r.stderr);
    assert.equal(sha256(script), sum, 'the script outside the current folder is untouched');
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('with --allow-outside the same fix is written (the person said so)', async () => {
    const elsewhere = caseDir('scope-allowed');
    const copy = caseDir('scope-copy');
    // A copy of the project, so the shared one stays as recorded for the other cases.
    const target = join(copy, 'train.js');
    writeFileSync(target, readFileSync(script));
    const header = readFileSync(runFile, 'latin1').split('\n', 1)[0];
    const retargeted = join(copy, 'run.gsrun');
    const body = readFileSync(runFile).subarray(Buffer.byteLength(header, 'latin1'));
    writeFileSync(retargeted, Buffer.concat([Buffer.from(header.split(script).join(target), 'latin1'), body]));
    // The tensors' sources still name the project's train.js: a global finding or the layer line
    // decides which file; either way only --allow-outside lets it through.
    const before = sha256(target);
    const r = await gradscope(['fix', '--from-run', retargeted, '--remedy', 'lower-lr', '--finding', 'non-finite-gradient', '--allow-outside'], { cwd: elsewhere });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /--allow-outside/);
    assert.match(r.stdout, /Wrote /);
    assert.notEqual(sha256(target), before, 'written when allowed');
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('a run file whose script line names another folder than its source map cannot direct an edit (exit 3), even from inside the folder', async () => {
    // Crafted: the first line says the script is /…/decoy/train.js; the frames say the layers were
    // built in the project's train.js. The file the fix would edit is not the run's script, nor
    // under its folder: refused, and both files stay as they were.
    const decoyDir = caseDir('scope-decoy');
    const decoy = join(decoyDir, 'train.js');
    writeFileSync(decoy, '// the decoy script\n');
    const header = readFileSync(runFile, 'latin1').split('\n', 1)[0];
    const crafted = join(project, 'crafted.gsrun');
    writeFileSync(crafted, Buffer.concat([Buffer.from(header.split(script).join(decoy), 'latin1'), readFileSync(runFile).subarray(Buffer.byteLength(header, 'latin1'))]));
    const sums = [sha256(script), sha256(decoy)];
    const r = await gradscope(['fix', '--from-run', crafted], { cwd: project });
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stderr, /not written: .*train\.js is not the run's script and lies outside its folder/);
    assert.deepEqual([sha256(script), sha256(decoy)], sums);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('on a terminal it asks: "n" leaves the file (exit 3), Ctrl-C at the prompt ends it (exit 130), "y" writes', (t) => {
    const elsewhere = caseDir('scope-tty');
    const sum = sha256(script);
    const no = fixOnTerminal(['fix', '--from-run', runFile], elsewhere, 'n\r');
    if (!no) return t.skip('python3 (for a pseudo-terminal) is not available');
    assert.match(no.out, /Edit .*train\.js anyway\? \[y\/N\]/);
    assert.equal(no.code, 3, no.out);
    assert.match(no.out, /Not written: .*train\.js is unchanged/);
    assert.equal(sha256(script), sum);
    const interrupted = fixOnTerminal(['fix', '--from-run', runFile], elsewhere, '\x03');
    assert.equal(interrupted?.code, 130, interrupted?.out);
    assert.equal(sha256(script), sum);
    const copy = caseDir('scope-tty-yes');
    const target = join(copy, 'train.js');
    writeFileSync(target, readFileSync(script));
    const header = readFileSync(runFile, 'latin1').split('\n', 1)[0];
    const retargeted = join(copy, 'run.gsrun');
    writeFileSync(retargeted, Buffer.concat([Buffer.from(header.split(script).join(target), 'latin1'), readFileSync(runFile).subarray(Buffer.byteLength(header, 'latin1'))]));
    const yes = fixOnTerminal(['fix', '--from-run', retargeted, '--finding', 'non-finite-gradient', '--remedy', 'lower-lr'], elsewhere, 'y\r');
    assert.equal(yes?.code, 0, yes?.out);
    assert.notEqual(sha256(target), sum, 'written after "y"');
  });

  it('--dry-run shows the diff and says consent would be needed, changing nothing (exit 0)', async () => {
    const elsewhere = caseDir('scope-dry');
    const sum = sha256(script);
    const r = await gradscope(['fix', '--from-run', runFile, '--dry-run'], { cwd: elsewhere });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\+\+\+ b\//m);
    assert.match(r.stdout, /would need your consent/);
    assert.equal(sha256(script), sum);
  });

  it('--verify on a fix to another module than the script: "not verified", nothing written (exit 6)', async () => {
    // train.js builds its model in model.js: the finding points into model.js; verification can
    // only run a fixed copy of train.js, so the edit cannot be verified and must not be written.
    const dir = caseDir('scope-module');
    const mlp = readFileSync(copyExample('exploding-mlp.js', dir, 'original.js'), 'utf8');
    const modelPart = mlp.slice(mlp.indexOf('const badInit'), mlp.indexOf('model.compile'));
    writeFileSync(join(dir, 'model.js'), `const tf = require('@tensorflow/tfjs');\nexports.build = () => {\n${modelPart.replace(/^/gm, '  ')}  return model;\n};\n`);
    writeFileSync(
      join(dir, 'train.js'),
      [
        "const tf = require('@tensorflow/tfjs');",
        "const { build } = require('./model');",
        "const x = tf.randomUniform([512, 20], -1, 1, 'float32', 1);",
        "const y = x.matMul(tf.randomNormal([20, 1], 0, 1, 'float32', 2)).sin();",
        'const model = build();',
        "model.compile({ optimizer: tf.train.sgd(0.007), loss: 'meanSquaredError' });",
        'model.fit(x, y, { epochs: 10, batchSize: 64, shuffle: false, verbose: 0 });',
        '',
      ].join('\n'),
    );
    const sums = [sha256(join(dir, 'model.js')), sha256(join(dir, 'train.js'))];
    const r = await gradscope(['fix', 'train.js', '--verify', '--steps', '12'], { cwd: dir });
    assert.equal(r.code, 6, r.stdout + r.stderr);
    assert.match(r.stdout, /Finding: \S+ \(\w+\) at model\.js:\d+/);
    assert.match(r.stderr, /cannot be verified/);
    assert.match(r.stdout, /Not written: the fix could not be verified \(model\.js is unchanged\)/);
    assert.doesNotMatch(r.stdout, /^Wrote /m);
    assert.deepEqual([sha256(join(dir, 'model.js')), sha256(join(dir, 'train.js'))], sums);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('control: in the project folder, the same run file fixes its own script (the rule is not "never")', async () => {
    const dir = caseDir('scope-own');
    const own = copyExample('exploding-mlp.js', dir, 'train.js');
    const run = await gradscope(['run', 'train.js', '--steps', '12', '--out', 'runs'], { cwd: dir });
    assert.equal(run.code, 0, run.stderr);
    const before = sha256(own);
    const r = await gradscope(['fix', '--from-run', runFilesIn(join(dir, 'runs'))[0]], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Wrote train\.js/);
    assert.notEqual(sha256(own), before);
  });
});
