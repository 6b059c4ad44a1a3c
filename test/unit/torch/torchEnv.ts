// Which Python the torch tests use, and whether it has torch. GRADSCOPE_TEST_PYTHON overrides the
// default /usr/bin/python3 (Debian's python3-torch is for that interpreter; the `python3` first on
// PATH may be another one). Without torch the tests skip, with a message — except under `npm test`
// (GRADSCOPE_REQUIRE_TORCH=1, after it has provisioned torch) and in CI, where a skip would hide a failure.
import { spawnSync } from 'node:child_process';

export const PYTHON = process.env.GRADSCOPE_TEST_PYTHON || '/usr/bin/python3';

function probeTorch(): string | null {
  const r = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) return `${PYTHON} cannot be run (${r.error.message})`;
  if (r.status !== 0) return `torch does not import with ${PYTHON}: ${(r.stderr || '').trim().split('\n').pop()}`;
  return null;
}

const missing = probeTorch();

/**
 * `skip` option for describe()/it(): false when torch is there; a reason (the test is skipped)
 * when it is not. In CI a missing torch is an error instead.
 */
export function torchSkip(): false | string {
  if (!missing) return false;
  if (process.env.CI || process.env.GRADSCOPE_REQUIRE_TORCH) {
    throw new Error(`the PyTorch tests cannot run: ${missing}. Run scripts/setup-torch.sh first (or set GRADSCOPE_TEST_PYTHON).`);
  }
  const why = `skipped: ${missing} (run scripts/setup-torch.sh, or set GRADSCOPE_TEST_PYTHON)`;
  process.stderr.write(`[torch tests] ${why}\n`);
  return why;
}
