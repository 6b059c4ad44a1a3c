// Reads the activation of a layer from the line of the user's code that built it (the probe's
// tensor info has the layer class, not its activation), or for a PyTorch script from the module after
// it in a Sequential or the function its output goes through; files are read once per run.
import { activationFromSource, torchActivationFromSource } from '../core/analysis/activation';
import type { ActivationFamily } from '../core/analysis/model';
import type { TensorInfo } from '../core/protocol/messages';
import { readRegularText } from './files';

export function activationFromFiles(): (t: TensorInfo) => ActivationFamily | null {
  const texts = new Map<string, string | null>();
  return (t) => {
    if (!t.source) return null;
    let text = texts.get(t.source.file);
    if (text === undefined) {
      try {
        // A run file names these paths: only a regular file is read (never a FIFO or a device).
        text = readRegularText(t.source.file);
      } catch {
        text = null;
      }
      texts.set(t.source.file, text);
    }
    if (text === null) return null;
    return /\.py$/i.test(t.source.file) ? torchActivationFromSource(text, t.source.line) : activationFromSource(text, t.source.line, t.layerType);
  };
}
