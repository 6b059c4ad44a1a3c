// Which training framework drives the script's optimizer step, read from its calls (through the
// file's imports of lightning / pytorch_lightning / transformers): PyTorch Lightning (a `Trainer`
// or a `LightningModule` subclass), the Hugging Face `Trainer` (`TrainingArguments`, its
// `Trainer`, or `HfArgumentParser`), or a plain loop. Under a framework the remedies are written
// in its idiom: `Trainer(gradient_clip_val=…)`, `TrainingArguments(max_grad_norm=…, learning_rate=…)`.
import { argumentsOf, calls, importBindings, named, resolve, walk, type SyntaxNode } from './syntax';

export const FRAMEWORK_PACKAGES = ['lightning', 'pytorch_lightning', 'transformers'] as const;

const LIGHTNING = '(?:lightning(?:\\.pytorch)?|pytorch_lightning)';
const LIGHTNING_TRAINER = new RegExp(`^${LIGHTNING}(?:\\.trainer(?:\\.trainer)?)?\\.Trainer$`);
const LIGHTNING_CLI = new RegExp(`^${LIGHTNING}(?:\\.cli|\\.utilities\\.cli)?\\.LightningCLI$`);
const LIGHTNING_MODULE = new RegExp(`^${LIGHTNING}(?:\\.core(?:\\.module)?)?\\.LightningModule$`);
const HF_ARGUMENTS = /^transformers(?:\.training_args(?:_seq2seq)?)?\.(?:Seq2Seq)?TrainingArguments$/;
const HF_TRAINER = /^transformers(?:\.trainer(?:_seq2seq)?)?\.(?:Seq2Seq)?Trainer$/;
const HF_PARSER = /^transformers(?:\.hf_argparser)?\.HfArgumentParser$/;

export type Framework =
  | {
      kind: 'lightning';
      /** `Trainer(…)` calls. */
      trainers: SyntaxNode[];
      /** `class X(LightningModule)` definitions. */
      modules: SyntaxNode[];
      /** `LightningCLI(…)` calls: the Trainer is built from the command line / a config file. */
      clis: SyntaxNode[];
    }
  | {
      kind: 'hf';
      /** `TrainingArguments(…)` calls. */
      args: SyntaxNode[];
      /** HF `Trainer(…)` calls. */
      trainers: SyntaxNode[];
      /** `HfArgumentParser(…)` calls: the arguments come from the command line. */
      parsers: SyntaxNode[];
    }
  | { kind: 'plain' };

export function frameworkOf(root: SyntaxNode): Framework {
  const b = importBindings(root, FRAMEWORK_PACKAGES);
  if (b.size === 0) return { kind: 'plain' };
  const byCallee = (re: RegExp): SyntaxNode[] => calls(root).filter((c) => re.test(resolve(c.childForFieldName('function'), b) ?? ''));
  const trainers = byCallee(LIGHTNING_TRAINER);
  const modules: SyntaxNode[] = [];
  walk(root, (n) => {
    if (n.type === 'class_definition') {
      const sup = n.childForFieldName('superclasses');
      if (sup && named(sup).some((s) => LIGHTNING_MODULE.test(resolve(s, b) ?? ''))) modules.push(n);
    }
    return true;
  });
  const clis = byCallee(LIGHTNING_CLI);
  if (trainers.length || modules.length || clis.length) return { kind: 'lightning', trainers, modules, clis };
  const args = byCallee(HF_ARGUMENTS);
  const hfTrainers = byCallee(HF_TRAINER);
  const parsers = byCallee(HF_PARSER);
  if (args.length || hfTrainers.length || parsers.length) return { kind: 'hf', args, trainers: hfTrainers, parsers };
  return { kind: 'plain' };
}

/** The HF Trainer is given its own optimizer (`Trainer(…, optimizers=(opt, sched))`): its lr is that optimizer's. */
export function hfOwnOptimizer(fw: Framework): SyntaxNode | null {
  if (fw.kind !== 'hf') return null;
  for (const t of fw.trainers) {
    const o = argumentsOf(t).keywords.get('optimizers');
    if (o && o.type !== 'none' && !(o.type === 'tuple' && o.namedChild(0)?.type === 'none')) return t;
  }
  return null;
}
