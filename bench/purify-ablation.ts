// `npm run bench:purify-ablation -- --model NAME [--variants a,b] [--seed N] [--json FILE]`:
// purification variants side by side on one model. The trigger is inverted once, with the
// defense's own stage-1 settings, and every variant starts from the same weights, the same
// clean subset and the same trigger, so the BA/ASR differences are the variants' alone. Each
// variant is a set of `mcldef defend` options over the default preset, resolved by the same
// functions the defense uses.
// --model: 'reference' (the authors' model, target 5) or a model of bench/grids/cifar10.yaml
// (weights in $MCLDEF_MODELS); or --weights FILE --attack NAME --target K [attack flags].
// The inversion kind is the one detection picks for the model's attack (warp for WaNet,
// signal for SIG, else pattern), or --inversion; the target is the attack's (detection finds
// it on every one of these models: docs/results.md, "Detection you can trust").
// --json FILE appends one JSON line per variant.
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { benchModels, namedFolder } from './models.js';

import { inversionOptionsFor, purifyOptionsFor } from '../src/defenses/mcldef/defense.js';
import { type DetectionResult, decideTarget, scanInversion, scanSubset } from '../src/defenses/mcldef/detect.js';
import { keep } from '../src/engine/scope.js';
import type { Tensor } from '../src/engine/tensor.js';
import { invertTrigger, purify, stackTriggers } from '../src/defenses/mcldef/index.js';
import { type McldefOptions, mcldefOptions, scanOptions, stackScanPatterns } from '../src/defenses/mcldef/options.js';
import { type InversionMethod, withPatterns } from '../src/defenses/mcldef/trigger.js';
import type { OptionValues } from '../src/defenses/options.js';
import { evaluate } from '../src/eval/metrics.js';
import { permutation } from '../src/data/rng.js';
import { defenseSetup } from './defense-setup.js';

/**
 * Each variant: `mcldef defend` options (library names) over the default preset. `before` is
 * the defaults before issue #21: the clean-feature term for warp and signal triggers only,
 * the guard at 4 points re-fitting on clean images alone, the inverted trigger alone.
 */
const VARIANTS: Record<string, OptionValues> = {
  published: { preset: 'published' },
  before: { accuracyGuard: 4, refitStamped: false, stackScanPatterns: false },
  default: {},
  'published-loss+guard': { cleanFeatureWeight: 0, accuracyGuard: 4, refitStamped: false },
  'guard-stamped': { cleanFeatureWeight: 0, accuracyGuard: 4 },
  'features+guard-4': { accuracyGuard: 4 },
  'features+refit': { refitHead: true },
  'features+refit-clean': { refitHead: true, refitStamped: false },
  'features-0.5+refit': { cleanFeatureWeight: 0.5, refitHead: true },
  'inverted-only': { stackScanPatterns: false },
};

const results = namedFolder('MCLDEF_RESULTS');
const attackOptions = {
  attack: { type: 'string' },
  target: { type: 'string' },
  alpha: { type: 'string' },
  'poison-rate': { type: 'string', default: '0.1' },
  'trojan-model': { type: 'string' },
  trigger: { type: 'string' },
  mask: { type: 'string' },
  'attack-seed': { type: 'string' },
} as const;
const { values } = parseArgs({
  options: {
    ...attackOptions,
    model: { type: 'string' },
    weights: { type: 'string' },
    arch: { type: 'string', default: 'wrn-16-1' },
    data: { type: 'string', default: 'cifar10:../shared/data/cifar10-jpeg' },
    variants: { type: 'string', default: 'before,default' },
    seed: { type: 'string', default: '0' },
    inversion: { type: 'string' },
    epochs: { type: 'string' },
    'inversion-patience': { type: 'string' },
    precision: { type: 'string' },
    threads: { type: 'string', default: '2' },
    json: { type: 'string' },
    stack: { type: 'string', default: '1' },
    split: { type: 'string', default: '1' },
    'scan-stack': { type: 'boolean', default: false },
    detected: { type: 'boolean', default: false },
  },
});

/** The weights and attack flags: --model's, or the command line's. */
function attackOf(): { weights: string; attack: Record<string, string | undefined> } {
  if (values.model === undefined) {
    if (values.weights === undefined || values.attack === undefined) {
      console.error('usage: --model NAME | --weights FILE --attack NAME --target K [attack flags]; see the header');
      process.exit(2);
    }
    const { attack, target, alpha, mask, trigger } = values;
    return {
      weights: values.weights,
      attack: {
        attack,
        target,
        alpha,
        mask,
        trigger,
        'poison-rate': values['poison-rate'],
        'trojan-model': values['trojan-model'],
        'attack-seed': values['attack-seed'],
      },
    };
  }
  const model = benchModels().find((m) => m.name === values.model);
  if (model === undefined) throw new Error(`no model ${values.model} in bench/grids/cifar10.yaml`);
  // The grid's attack flags; pattern, mode and watermark are not variants' concern here.
  const parsed = parseArgs({
    args: model.attackFlags,
    options: {
      ...attackOptions,
      pattern: { type: 'string' },
      mode: { type: 'string' },
      'trojan-watermark': { type: 'string' },
    },
  }).values;
  return { weights: model.weights, attack: parsed };
}

const { weights, attack: a } = attackOf();
if (a.attack === undefined) throw new Error(`${values.model} is a clean model: name --weights and --attack`);
const seed = Number(values.seed);
const target = Number(values.target ?? a.target ?? '0');
const flags = {
  threads: Number(values.threads),
  seed,
  quiet: true,
  attack: a.attack,
  target,
  mode: 'all-to-one' as const,
  poisonRate: Number(a['poison-rate'] ?? '0.1'),
  ...(a.alpha === undefined ? {} : { alpha: Number(a.alpha) }),
  ...(a['trojan-model'] === undefined ? {} : { trojanModel: a['trojan-model'] }),
  ...(a.trigger === undefined ? {} : { trigger: a.trigger }),
  ...(a.mask === undefined ? {} : { mask: a.mask }),
  ...(a['attack-seed'] === undefined ? {} : { attackSeed: Number(a['attack-seed']) }),
};
/** The kind the detection scan flags each attack's target with (docs/results.md). */
const methodOf = (name: string): InversionMethod => (name === 'wanet' ? 'warp' : name === 'sig' ? 'signal' : 'pattern');
/** Settings given on the command line apply to every variant. */
const common: OptionValues = {
  ...(values.epochs === undefined ? {} : { epochs: Number(values.epochs) }),
  ...(values['inversion-patience'] === undefined ? {} : { inversionPatience: Number(values['inversion-patience']) }),
  ...(values.precision === undefined ? {} : { precision: values.precision }),
};
const optionsOf = (variant: OptionValues): McldefOptions => mcldefOptions({ ...variant, ...common });
const context = { seed, dataKind: 'cifar10' };

const { test, clean, attack, load } = defenseSetup(flags, values.data, values.arch, weights);
const measure = (model: ReturnType<typeof load>) =>
  evaluate(model, test, { normalization: test.normalization, trigger: attack });
const describe = (m: ReturnType<typeof measure>): string =>
  `BA ${m.ba.toFixed(2)}  ASR ${m.asr.toFixed(2)}  without the trigger ${m.asr_no_trigger.toFixed(2)}  residual ${(m.asr - m.asr_no_trigger).toFixed(2)}`;

const original = load();
const before = measure(original);
/** The scan's patterns for the purified target, from the scan's start (0) and its restarts' (1, 2). */
function scanPatternsFor(starts: number[]): Tensor[] {
  const scan = scanOptions(optionsOf({}), seed);
  const scanSet = scanSubset(clean, scan);
  try {
    return starts.map((start) => {
      const found = scanInversion(original, scanSet, defenseTarget, seed + start, scan);
      const pattern = keep(found.pattern.clone());
      found.dispose();
      return pattern;
    });
  } finally {
    if (scanSet !== clean) scanSet.dispose();
  }
}

// --detected: the target, and the kind of trigger, that the stored detection scan decided
// ($MCLDEF_RESULTS/detection/MODEL-sSEED.json, from `npm run bench:detection`); the scan's
// patterns for that target are inverted again as the scan inverted them (its start, and the
// restarts' where restarts ran).
let defenseTarget = target;
let method = methodOf(a.attack);
const scanPatterns: Tensor[] = [];
if (values.detected) {
  const name = values.model ?? 'model';
  const path = join(results, 'detection', `${name}-s${seed}.json`);
  const stored = JSON.parse(readFileSync(path, 'utf8')) as DetectionResult;
  const decision = decideTarget(stored.classes);
  if (decision.target === null) {
    console.log(`${name}: the stored scan found no backdoor (${path}); nothing to purify`);
    process.exit(0);
  }
  defenseTarget = decision.target;
  method = decision.flaggedBy === 'warp' || decision.flaggedBy === 'signal' ? decision.flaggedBy : 'pattern';
  if (decision.flaggedBy === 'size') {
    scanPatterns.push(...scanPatternsFor(stored.classes[defenseTarget]!.restartSizes.length > 0 ? [0, 1, 2] : [0]));
  }
}
if (values.inversion !== undefined) method = values.inversion as InversionMethod;
console.log(
  `${values.model ?? weights}, target ${target} (purified: ${defenseTarget}, ${method}), seed ${seed}; before: ${describe(before)}`,
);
let started = performance.now();
// --stack N: N pattern inversions from seeds seed … seed+N−1, purified against together.
const inverted = Array.from(
  { length: Number(values.split) > 1 ? Number(values.stack) - 1 : Number(values.stack) },
  (_, k) => invertTrigger(original, clean, defenseTarget, inversionOptionsFor(optionsOf({}), method, seed + k)),
);
// --split K: K inversions more, each on its own K-th of the clean images (seeded shuffle).
const parts = Number(values.split);
if (parts > 1) {
  const order = permutation(clean.count, seed + 7);
  for (let k = 0; k < parts; k++) {
    const share = clean.select(
      Array.from(order).filter((_, i) => i % parts === k),
      `part ${k}`,
    );
    inverted.push(
      invertTrigger(original, share, defenseTarget, inversionOptionsFor(optionsOf({}), method, seed + 10 + k)),
    );
    share.dispose();
  }
}
const trigger = inverted.length === 1 ? inverted[0]! : stackTriggers(inverted);
if (inverted.length > 1) {
  console.log(`stack of ${inverted.length}: sizes ${inverted.map((t) => t.size).join(', ')}`);
  for (const t of inverted) t.dispose();
}
// --scan-stack (target given): one scan pattern for the target, as the scan inverts it.
if (values['scan-stack'] && scanPatterns.length === 0) scanPatterns.push(...scanPatternsFor([0]));
const inversionSeconds = (performance.now() - started) / 1000;
console.log(
  `trigger (${method}): size ${trigger.size}, attack accuracy ${(100 * trigger.attackAccuracy).toFixed(1)}%, ${trigger.passes} passes, ${inversionSeconds.toFixed(0)} s; ${scanPatterns.length} scan pattern(s)`,
);
original.dispose();

for (const name of values.variants.split(',')) {
  const variant = VARIANTS[name];
  if (variant === undefined) throw new Error(`unknown variant ${name}; known: ${Object.keys(VARIANTS).join(', ')}`);
  const model = load();
  started = performance.now();
  const options = optionsOf(variant);
  // The defense's rule: a pattern trigger is purified against together with the scan's patterns.
  const stacked =
    method === 'pattern' && stackScanPatterns(options) && scanPatterns.length > 0
      ? withPatterns(trigger, scanPatterns)
      : null;
  const result = purify(model, clean, stacked ?? trigger, {
    ...purifyOptionsFor(options, method, context),
    // Before #21 the clean-feature term was on for warp and signal triggers only.
    ...(name === 'before' ? { cleanFeatureWeight: method === 'pattern' ? 0 : 1 } : {}),
  });
  stacked?.dispose();
  const seconds = (performance.now() - started) / 1000;
  const after = measure(model);
  const guard = result.guard;
  const guardText =
    guard === undefined
      ? ''
      : `  [clean images ${guard.before.toFixed(2)} -> ${guard.after.toFixed(2)}${guard.refitHead ? ', head re-fitted' : ''}]`;
  const ok = after.ba >= before.ba - 1 && after.asr - after.asr_no_trigger <= 1 ? 'ok' : '--';
  console.log(`${ok} ${name.padEnd(26)} ${describe(after)}  (${seconds.toFixed(0)} s)${guardText}`);
  if (values.json !== undefined) {
    const row = {
      model: values.model ?? weights,
      seed,
      variant: name,
      method,
      target: defenseTarget,
      scan_patterns: stacked === null ? 0 : scanPatterns.length,
      trigger_size: trigger.size,
      before: { ba: before.ba, asr: before.asr, asr_no_trigger: before.asr_no_trigger },
      after: { ba: after.ba, asr: after.asr, asr_no_trigger: after.asr_no_trigger },
      seconds,
      inversion_seconds: inversionSeconds,
      guard: guard ?? null,
    };
    appendFileSync(values.json, JSON.stringify(row) + '\n');
  }
  model.dispose();
}
trigger.dispose();
for (const pattern of scanPatterns) pattern.dispose();
