// A remote run's source paths mapped to the workspace's files (src/features/remotePaths.ts), on real folders.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { findLocal, workspacePathMapper } from '../../../src/features/remotePaths';

const root = mkdtempSync(join(tmpdir(), 'gs-ws-'));
after(() => rmSync(root, { recursive: true, force: true }));
const ws = join(root, 'proj');
mkdirSync(join(ws, 'models'), { recursive: true });
writeFileSync(join(ws, 'train.py'), '');
writeFileSync(join(ws, 'models', 'net.py'), '');

describe('remote paths to workspace files', () => {
  it('finds the same relative path under a workspace folder, the longest tail first', () => {
    assert.equal(findLocal('/home/alice/proj/models/net.py', [ws]), join(ws, 'models', 'net.py'));
    assert.equal(findLocal('/srv/checkout/proj/train.py', [ws]), join(ws, 'train.py'));
    // a workspace folder that is the project's parent: the tail with the project's name
    assert.equal(findLocal('/home/alice/proj/models/net.py', [root]), join(ws, 'models', 'net.py'));
  });

  it('says when the file is not here (null), and never matches on a bare file name', () => {
    assert.equal(findLocal('/home/alice/other/data.py', [ws]), null);
    assert.equal(findLocal('/opt/train.py', [join(ws, 'models')]), null);
    assert.equal(findLocal('train.py', [ws]), null);
  });

  it('keeps a path that exists in the workspace as it is', () => {
    assert.equal(findLocal(join(ws, 'models', 'net.py'), [ws]), join(ws, 'models', 'net.py'));
    const map = workspacePathMapper([ws]);
    assert.equal(map('/x/proj/train.py'), join(ws, 'train.py'));
    assert.equal(map('/x/nowhere/a.py'), null);
  });
});
