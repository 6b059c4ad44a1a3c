// The interpreter order for PyTorch runs from VS Code: Python extension → gradscope.pythonPath → default.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pickInterpreter, PYTHON_EXTENSION_ID, type InterpreterDeps } from '../../../src/features/pythonInterpreter';
import { choosePython, HOW_TO_CHOOSE } from '../../../src/process/python';

// Only fsPath is read from a Uri here.
const uri = (p: string) => ({ fsPath: p, toString: () => `file://${p}` }) as never;
const script = uri('/ws/a/train.py');

function deps(api: unknown, opts: { installed?: boolean; seen?: unknown[] } = {}): InterpreterDeps {
  return {
    extensions: { getExtension: ((id: string) => (opts.installed !== false && id === PYTHON_EXTENSION_ID ? {} : undefined)) as never },
    loadApi: () => (api instanceof Error ? Promise.reject(api) : Promise.resolve(api as never)),
    timeoutMs: 200,
  };
}

function envApi(exe: string | undefined, seen: unknown[] = [], activePath = '/venv/bin/python') {
  return {
    environments: {
      getActiveEnvironmentPath: (r: unknown) => {
        seen.push(r);
        return { id: 'x', path: activePath };
      },
      resolveEnvironment: () => Promise.resolve(exe === undefined ? undefined : { executable: { uri: exe ? uri(exe) : undefined } }),
    },
  };
}

describe('pickInterpreter', () => {
  it("uses the Python extension's interpreter for the script first, over the setting", async () => {
    const seen: unknown[] = [];
    const p = await pickInterpreter(script, '/usr/bin/python3', deps(envApi('/ws/.venv/bin/python', seen)));
    assert.deepEqual(p, { python: '/ws/.venv/bin/python', source: 'python-extension' });
    assert.equal(seen[0], script, "asked for the script's resource");
  });

  it("without the Python extension: the setting, else nothing (RunSession's default)", async () => {
    let loaded = false;
    const d: InterpreterDeps = { extensions: { getExtension: () => undefined }, loadApi: () => ((loaded = true), Promise.resolve(envApi('/x') as never)) };
    assert.deepEqual(await pickInterpreter(script, ' /opt/py/bin/python3 ', d), { python: '/opt/py/bin/python3', source: 'setting', note: undefined });
    assert.deepEqual(await pickInterpreter(script, '', d), { python: undefined, source: undefined, note: undefined });
    assert.equal(loaded, false, 'the API is not loaded when the extension is absent');
  });

  it('falls back to the setting, with a note, when the extension has no usable interpreter, fails or hangs', async () => {
    const cases: [unknown, RegExp][] = [
      [envApi(undefined), /has no Python executable/],
      [envApi(''), /has no Python executable/],
      [envApi('/x', [], ''), /no interpreter selected/],
      [new Error('activation failed'), /activation failed/],
      [new Promise(() => undefined), /did not answer within/],
    ];
    for (const [api, note] of cases) {
      const d = deps(api);
      if (api instanceof Promise) d.loadApi = () => api as never;
      const p = await pickInterpreter(script, '/usr/bin/python3', d);
      assert.equal(p.python, '/usr/bin/python3');
      assert.equal(p.source, 'setting');
      assert.match(p.note ?? '', note);
    }
  });
});

describe('choosePython with a source', () => {
  it('names where the interpreter came from', () => {
    assert.deepEqual(choosePython('/v/bin/python', {}, 'python-extension'), { python: '/v/bin/python', from: 'python-extension' });
    assert.deepEqual(choosePython('/v/bin/python', {}), { python: '/v/bin/python', from: 'setting' });
    assert.deepEqual(choosePython(undefined, { GRADSCOPE_PYTHON: '/e/python' }, 'python-extension'), { python: '/e/python', from: 'env' });
    assert.match(HOW_TO_CHOOSE, /Python: Select Interpreter/);
    assert.match(HOW_TO_CHOOSE, /gradscope\.pythonPath/);
    assert.match(HOW_TO_CHOOSE, /GRADSCOPE_PYTHON/);
  });
});
