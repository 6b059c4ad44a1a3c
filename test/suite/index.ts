// Entry point of the extension-host suite (bundled to dist/test/suite/index.js): VS Code calls
// run() inside the extension host. Which tests run depends on the host's trust mode, set by
// test/host/run.mjs. The counts go to $GRADSCOPE_TEST_RESULTS for the harness's closing line.
import { writeFileSync } from 'node:fs';
import type MochaType from 'mocha';
import * as vscode from 'vscode';
import { defineDiagnosisTests } from './diagnosis';
import { defineNotebookTests } from './notebook';
import { defineRemoteTests } from './remote';
import { defineRunTests } from './runs';
import { defineTorchTests } from './torch';
import { defineTrustTests } from './trust';

export function run(): Promise<void> {
  // mocha 12's package entry is ESM; its CommonJS build exports the class as `Mocha`.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Mocha } = require('mocha/lib/mocha.cjs') as { Mocha: typeof MochaType };
  const mocha = new Mocha({ ui: 'bdd', timeout: 120_000, color: false, reporter: 'spec' });
  // The test files are bundled into this one: give them mocha's globals, then let them declare.
  mocha.suite.emit('pre-require', globalThis, 'gradscope-suite', mocha);
  const untrusted = process.env.GRADSCOPE_HOST_TRUST === 'untrusted' || !vscode.workspace.isTrusted;
  if (untrusted) defineTrustTests();
  else {
    defineRunTests();
    defineDiagnosisTests();
    defineTorchTests();
    defineNotebookTests();
    defineRemoteTests();
  }

  return new Promise((resolve, reject) => {
    const runner = mocha.run((failures) => {
      const stats = runner.stats ?? { passes: 0, failures, pending: 0 };
      const counts = { passed: stats.passes, failed: stats.failures, pending: stats.pending };
      console.log(`[gradscope-suite] ${counts.passed} passed, ${counts.failed} failed`);
      const out = process.env.GRADSCOPE_TEST_RESULTS;
      if (out) writeFileSync(out, JSON.stringify(counts));
      if (failures > 0) reject(new Error(`${failures} test(s) failed`));
      else resolve();
    });
  });
}
