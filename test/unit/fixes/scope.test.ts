// The fix scope rule (src/core/fixes/scope.ts): which file a fix may edit without asking.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fixScope, isInside, type FixScopeFacts } from '../../../src/core/fixes/scope';

const base: FixScopeFacts = {
  file: '/work/proj/train.js',
  script: '/work/proj/train.js',
  scriptNamedByUser: false,
  sourceFiles: ['/work/proj/train.js', '/work/proj/lib/model.js', '/etc/evil.js'],
  roots: ['/work/proj'],
};

describe('fixScope', () => {
  it('the run script inside the current folder: allowed', () => {
    assert.deepEqual(fixScope(base), { allowed: true });
  });

  it('a file under the script folder that the source map names: allowed', () => {
    assert.deepEqual(fixScope({ ...base, file: '/work/proj/lib/model.js' }), { allowed: true });
  });

  it('a file the source map names outside the script folder: not in the run', () => {
    const s = fixScope({ ...base, file: '/etc/evil.js' });
    assert.equal(s.allowed, false);
    assert.equal(!s.allowed && s.reason, 'not-in-run');
    assert.match(!s.allowed ? s.message : '', /not the run's script and lies outside its folder \(\/work\/proj\)/);
  });

  it('a file under the script folder that the source map does not name: not in the run', () => {
    const s = fixScope({ ...base, file: '/work/proj/.bashrc' });
    assert.equal(!s.allowed && s.reason, 'not-in-run');
  });

  it('a script only a run file names, outside the roots: asks (outside-roots)', () => {
    const s = fixScope({ ...base, file: '/home/u/train.js', script: '/home/u/train.js' });
    assert.equal(!s.allowed && s.reason, 'outside-roots');
    assert.match(!s.allowed ? s.message : '', /lies outside \/work\/proj, and only the run file names it/);
  });

  it('a script the person named is vouched for, wherever it lies (and files the run maps next to it)', () => {
    assert.deepEqual(fixScope({ ...base, file: '/home/u/train.js', script: '/home/u/train.js', scriptNamedByUser: true }), { allowed: true });
    assert.deepEqual(fixScope({ ...base, file: '/home/u/m.js', script: '/home/u/train.js', scriptNamedByUser: true, sourceFiles: ['/home/u/m.js'] }), { allowed: true });
    assert.equal(fixScope({ ...base, file: '/home/x.js', script: '/home/u/train.js', scriptNamedByUser: true, sourceFiles: ['/home/x.js'] }).allowed, false);
  });

  it('no roots: a saved run file never directs an edit without asking', () => {
    assert.equal(fixScope({ ...base, roots: [] }).allowed, false);
  });

  it('a sibling folder with a common prefix is not inside', () => {
    assert.equal(isInside('/work/proj-evil/train.js', '/work/proj'), false);
    assert.equal(isInside('/work/proj/train.js', '/work/proj/'), true);
    assert.equal(isInside('/work/proj', '/work/proj'), true);
    assert.equal(isInside('/anything', '/'), true);
    assert.equal(fixScope({ ...base, file: '/work/proj-evil/train.js', script: '/work/proj-evil/train.js' }).allowed, false);
  });

  it('Windows paths, case-insensitively when asked', () => {
    const win: FixScopeFacts = { file: 'C:\\Proj\\Train.py', script: 'c:\\proj\\train.py', scriptNamedByUser: false, sourceFiles: [], roots: ['C:\\proj'], caseInsensitive: true };
    assert.deepEqual(fixScope(win), { allowed: true });
    assert.equal(fixScope({ ...win, caseInsensitive: false }).allowed, false);
  });
});
