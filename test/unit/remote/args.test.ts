// `gradscope listen`'s arguments (src/cli/args.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { USAGE, UsageError, parseArgs } from '../../../src/cli/args';

describe('gradscope listen arguments', () => {
  it('defaults: port 7865 on 127.0.0.1, no token (generated or from GRADSCOPE_TOKEN), not --once', () => {
    assert.deepEqual(parseArgs(['listen']), { command: 'listen', port: 7865, host: '127.0.0.1', token: null, json: false, outDir: null, once: false });
  });

  it('takes its flags with a value or =', () => {
    assert.deepEqual(parseArgs(['listen', '--port=0', '--host', '0.0.0.0', '--token', 't0k', '--json', '--out', 'runs', '--once']), {
      command: 'listen',
      port: 0,
      host: '0.0.0.0',
      token: 't0k',
      json: true,
      outDir: 'runs',
      once: true,
    });
  });

  it('refuses a bad port, an empty token, a script', () => {
    assert.throws(() => parseArgs(['listen', '--port', '70000']), UsageError);
    assert.throws(() => parseArgs(['listen', '--port', 'x']), UsageError);
    assert.throws(() => parseArgs(['listen', '--token=']), /--token needs a value/);
    assert.throws(() => parseArgs(['listen', 'train.py']), /listen takes no script/);
  });

  it('is in the usage text, and --help asks for it', () => {
    assert.match(USAGE, /gradscope listen \[--port P\]/);
    assert.deepEqual(parseArgs(['listen', '--help']), { command: 'help', topic: 'listen' });
  });
});
