// The tensor info carries no activation; the layer's construction call usually names it. Given the
// text of the source file (read by the caller: the core does no I/O) and the 1-based line where the
// layer was built, reads `activation: '…'` from that call. A tf.layers call without one is linear.
import type { ActivationFamily } from './model';

const ACT = /activation\s*:\s*['"`]([A-Za-z0-9_]+)['"`]/;

export function familyOf(activation: string): ActivationFamily {
  const a = activation.toLowerCase();
  if (/relu|elu|selu|swish|gelu|mish/.test(a)) return 'relu';
  if (a.includes('tanh')) return 'tanh';
  if (a.includes('sigmoid') || a.includes('softmax')) return 'sigmoid';
  if (a === 'linear') return 'linear';
  return 'unknown';
}

/**
 * Activation of the layer whose construction starts at `line` (1-based): looks from that line to
 * where the call's parentheses balance (at most 12 lines). Null when the line does not build a
 * tf.layers layer (e.g. a raw tf.variable) or the text is not there.
 */
export function activationFromSource(text: string, line: number, layerType: string): ActivationFamily | null {
  const lines = text.split('\n');
  if (!(line >= 1 && line <= lines.length)) return null;
  const first = lines[line - 1];
  if (!/layers\.|new\s+[A-Z]/.test(first)) return null;
  let depth = 0;
  let seenOpen = false;
  let call = '';
  for (let i = line - 1; i < Math.min(lines.length, line + 11); i++) {
    const l = lines[i];
    call += l + '\n';
    for (const ch of l) {
      if (ch === '(') {
        depth++;
        seenOpen = true;
      } else if (ch === ')') depth--;
    }
    if (seenOpen && depth <= 0) break;
  }
  const m = ACT.exec(call);
  if (m) return familyOf(m[1]);
  // tf.layers' default activation: linear for Dense/Conv, tanh for the recurrent layers.
  if (/rnn|lstm|gru/i.test(layerType)) return 'tanh';
  if (/dense|conv/i.test(layerType)) return 'linear';
  return null;
}
