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

/** torch.nn activation modules and functions, by the family their name falls in. */
const TORCH_ACT_FN = '(relu6?|leaky_relu|elu|selu|celu|gelu|silu|mish|sigmoid|tanh|softmax|log_softmax|hardtanh|softplus)';
const TORCH_ACT_MODULE = /^(ReLU6?|LeakyReLU|PReLU|RReLU|ELU|SELU|CELU|GELU|SiLU|Mish|Sigmoid|Tanh|Softmax|LogSoftmax|Hardtanh|Softplus)$/;

function torchFamily(name: string): ActivationFamily {
  const a = name.toLowerCase();
  if (/relu|elu|gelu|silu|mish|softplus/.test(a)) return 'relu';
  if (a.includes('tanh')) return 'tanh';
  if (a.includes('sigmoid') || a.includes('softmax')) return 'sigmoid';
  return 'unknown';
}

/**
 * Activation after a PyTorch layer built at `line` (1-based), read from the script (torch modules
 * carry no activation): the module that follows it in an `nn.Sequential(…)` (`nn.Linear(16, 64),
 * nn.ReLU(),`), else the function its output goes through where it is called
 * (`torch.sigmoid(self.inp(x))`, `F.relu(self.fc1(x))`). Null when neither is written that way
 * (an activation applied further on, a ModuleList in a loop): the analyzer then offers both inits.
 */
export function torchActivationFromSource(text: string, line: number): ActivationFamily | null {
  const lines = text.split('\n');
  if (!(line >= 1 && line <= lines.length)) return null;
  const first = lines[line - 1];
  const ctor = /\bnn\s*\.\s*[A-Z]\w*\s*\(/.exec(first);
  if (!ctor) return null;
  // In a Sequential: the next element after the call's closing parenthesis.
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0) + ctor.index + ctor[0].length;
  let depth = 1;
  let i = start;
  for (; i < text.length && depth > 0; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')') depth--;
  }
  const next = /^\s*,(?:\s|#[^\n]*\n)*(?:torch\s*\.\s*)?nn\s*\.\s*([A-Z]\w*)\s*\(/.exec(text.slice(i));
  if (next) return TORCH_ACT_MODULE.test(next[1]) ? torchFamily(next[1]) : null;
  // Assigned to a name: where its output is passed to an activation function.
  const name = /^\s*((?:self\s*\.\s*)?[A-Za-z_]\w*)\s*=/.exec(first)?.[1].replace(/\s+/g, '');
  if (!name) return null;
  const callee = name.split('.').join('\\s*\\.\\s*');
  const use = new RegExp(`\\b${TORCH_ACT_FN}\\s*\\(\\s*${callee}\\s*\\(`).exec(text);
  return use ? torchFamily(use[1]) : null;
}
