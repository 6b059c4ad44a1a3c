// Small helpers for the extension-host suite (runs inside VS Code's extension host).
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { GradScopeApi } from '../../src/features/context';

export const EXTENSION_ID = 'gradscope.gradscope';

export async function activateExtension(): Promise<GradScopeApi> {
  const ext = vscode.extensions.getExtension<GradScopeApi>(EXTENSION_ID);
  if (!ext) throw new Error(`extension ${EXTENSION_ID} is not installed in this host`);
  return ext.activate();
}

export function workspaceRoot(): string {
  const folder = vscode.workspace.workspaceFolders?.[0];
  if (!folder) throw new Error('the suite needs a workspace folder');
  return folder.uri.fsPath;
}

export async function waitFor<T>(what: string, probe: () => T | undefined | null | false, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Asks the stand-in (test/host/code-standin.mjs) to screenshot the workbench, and waits until the
 * file is written. A no-op outside that harness.
 */
export async function screenshot(name: string): Promise<string | undefined> {
  const dir = process.env.GRADSCOPE_SCREENSHOT_DIR;
  if (!dir) return undefined;
  const file = join(dir, `${name}.png`);
  rmSync(file, { force: true });
  console.log(`[gradscope-host] screenshot ${name}`);
  try {
    await waitFor(`screenshot ${name}`, () => existsSync(file), 15_000);
    return file;
  } catch {
    console.log(`(no screenshot ${name}: the harness did not answer)`);
    return undefined;
  }
}
