// `npm run bench:purify-ablation -- --weights FILE --attack NAME --target K [--variants a,b]`:
// purification variants side by side on one model. The trigger is inverted once (default
// options, target given) and every variant starts from the same weights, the same clean
// subset and the same trigger, so the BA/ASR differences are the variants' alone.
// Extra attack flags (e.g. --alpha, --trojan-model) pass through as in `mcldef defend`.
import { parseArgs } from 'node:util';

import {
  DEFAULT_ACCURACY_GUARD,
  DEFAULT_INVERSION_PATIENCE,
  DEFAULT_PURIFICATION_EPOCHS,
} from '../src/defenses/mcldef/options.js';
import { type InversionMethod, type PurifyOptions, invertTrigger, purify } from '../src/defenses/mcldef/index.js';
import { evaluate } from '../src/eval/metrics.js';
import type { Classifier } from '../src/nn/models/classifier.js';
import { defenseSetup } from './defense-setup.js';

const VARIANTS: Record<string, PurifyOptions> = {
  published: {},
  'bn-recalibrate': { recalibrateBatchNorm: true },
  'lr-0.01': { lrSchedule: (epoch) => (epoch < 10 ? 0.01 : 0.001) },
  'lr-0.01+bn': { lrSchedule: (epoch) => (epoch < 10 ? 0.01 : 0.001), recalibrateBatchNorm: true },
  'clean-features': { cleanFeatureWeight: 1 },
  'clean-features+bn': { cleanFeatureWeight: 1, recalibrateBatchNorm: true },
  'clean-ce': { cleanWeight: 1 },
  'refit-head': { refitHead: true },
  'clean-features+refit-head': { cleanFeatureWeight: 1, refitHead: true },
  'clean-features-4': { cleanFeatureWeight: 4 },
  'clean-ce-from-1+refit-head': { cleanWeight: 1, cleanWeightFrom: 1, refitHead: true },
  'clean-ce-from-1': { cleanWeight: 1, cleanWeightFrom: 1 },
  'stamped-ce': { stampedWeight: 1 },
  'accuracy-guard': { accuracyGuard: DEFAULT_ACCURACY_GUARD },
  'clean-ce-from-1+guard': { cleanWeight: 1, cleanWeightFrom: 1, accuracyGuard: DEFAULT_ACCURACY_GUARD },
  'clean-features+guard': { cleanFeatureWeight: 1, accuracyGuard: DEFAULT_ACCURACY_GUARD },
};

const { values } = parseArgs({
  options: {
    weights: { type: 'string' },
    arch: { type: 'string', default: 'wrn-16-1' },
    data: { type: 'string', default: 'cifar10:../shared/data/cifar10-jpeg' },
    attack: { type: 'string' },
    target: { type: 'string', default: '0' },
    alpha: { type: 'string' },
    'poison-rate': { type: 'string', default: '0.1' },
    'trojan-model': { type: 'string' },
    trigger: { type: 'string' },
    mask: { type: 'string' },
    variants: { type: 'string', default: Object.keys(VARIANTS).join(',') },
    seed: { type: 'string', default: '0' },
    'inversion-patience': { type: 'string', default: String(DEFAULT_INVERSION_PATIENCE) },
    inversion: { type: 'string', default: 'pattern' },
    epochs: { type: 'string', default: String(DEFAULT_PURIFICATION_EPOCHS) },
    precision: { type: 'string', default: 'float32' },
    'inversion-precision': { type: 'string' },
    threads: { type: 'string', default: '2' },
  },
});
if (values.weights === undefined || values.attack === undefined) {
  console.error(
    'usage: --weights FILE --attack NAME --target K [--variants a,b] [--seed N] [--inversion pattern|mask|warp] [--inversion-patience N] [--epochs N] [--precision float32|bfloat16] [--inversion-precision float32|bfloat16] [--threads N]',
  );
  process.exit(2);
}
const seed = Number(values.seed);
const precision = values.precision === 'bfloat16' ? 'bfloat16' : 'float32';
const inversionPrecision = (values['inversion-precision'] ?? precision) === 'bfloat16' ? 'bfloat16' : 'float32';
const flags = {
  threads: Number(values.threads),
  seed,
  quiet: true,
  attack: values.attack,
  target: Number(values.target),
  mode: 'all-to-one' as const,
  poisonRate: Number(values['poison-rate']),
  ...(values.alpha === undefined ? {} : { alpha: Number(values.alpha) }),
  ...(values['trojan-model'] === undefined ? {} : { trojanModel: values['trojan-model'] }),
  ...(values.trigger === undefined ? {} : { trigger: values.trigger }),
  ...(values.mask === undefined ? {} : { mask: values.mask }),
};
const { test, clean, attack, load } = defenseSetup(flags, values.data, values.arch, values.weights);
const measure = (model: Classifier): string => {
  const m = evaluate(model, test, { normalization: test.normalization, trigger: attack });
  return `BA ${m.ba.toFixed(2)}  ASR ${m.asr.toFixed(2)}  (without the trigger ${m.asr_no_trigger.toFixed(2)})`;
};

function inversionMethod(name: string): InversionMethod {
  if (name === 'pattern' || name === 'mask' || name === 'warp') return name;
  throw new Error(`--inversion must be pattern, mask or warp, not ${name}`);
}

const original = load();
console.log(`before: ${measure(original)}`);
let started = performance.now();
const trigger = invertTrigger(original, clean, flags.target, {
  method: inversionMethod(values.inversion),
  seed,
  patience: Number(values['inversion-patience']),
  precision: inversionPrecision,
});
console.log(
  `trigger: size ${trigger.size}, attack accuracy ${(100 * trigger.attackAccuracy).toFixed(1)}%, ${trigger.passes} passes, ${((performance.now() - started) / 1000).toFixed(0)} s`,
);
console.log(
  `  new best at pass (size): ${trigger.history
    .filter((pass) => pass.improved)
    .map((pass) => `${pass.pass} (${pass.size})`)
    .join(', ')}`,
);
original.dispose();

for (const name of values.variants.split(',')) {
  const options = VARIANTS[name];
  if (options === undefined) throw new Error(`unknown variant ${name}; known: ${Object.keys(VARIANTS).join(', ')}`);
  const model = load();
  started = performance.now();
  const result = purify(model, clean, trigger, { precision, epochs: Number(values.epochs), ...options, seed });
  const seconds = (performance.now() - started) / 1000;
  const guard = result.guard;
  const guardText =
    guard === undefined
      ? ''
      : `  [guard: clean accuracy ${guard.before.toFixed(2)} -> ${guard.after.toFixed(2)}${guard.refitHead ? ', head re-fitted' : ''}]`;
  console.log(`${name.padEnd(20)} ${measure(model)}  (${seconds.toFixed(0)} s)${guardText}`);
  model.dispose();
}
trigger.dispose();
