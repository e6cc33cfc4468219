// The defense registry end to end: a defense registered from here appears in `mcldef list`
// and `mcldef defend --method … --help` with its own flags, and runs through the library's
// defend() with a held-out part of the clean data. Also MCLDef's presets and the option specs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { CommanderError } from 'commander';

import { hasNativeBfloat16, liveTensorCount, noGrad } from '../../src/engine/autograd.js';
import * as F from '../../src/engine/functional.js';
import { SGD } from '../../src/engine/optim/sgd.js';
import { tidy } from '../../src/engine/scope.js';
import { normalize, toUnitRange } from '../../src/data/normalization.js';
import { evaluate } from '../../src/eval/metrics.js';
import { loadWeights } from '../../src/io/index.js';
import { createModel } from '../../src/nn/models/index.js';
import { buildProgram } from '../../src/cli/program.js';
import { loadSplit } from '../../src/pipeline/setup.js';
import {
  type DefenseEntry,
  defenseEntries,
  OptionError,
  parseOptionValue,
  registerDefense,
  resolveOptions,
  unregisterDefense,
} from '../../src/defenses/index.js';
import {
  DEFAULT_ACCURACY_GUARD,
  DEFAULT_INVERSION_PATIENCE,
  DEFAULT_PURIFICATION_EPOCHS,
  DEFAULT_CLEAN_FEATURE_WEIGHT,
  accuracyGuard,
  changesFromPublished,
  cleanFeatureWeight,
  inversionPatience,
  mcldefOptions,
  purificationEpochs,
  purificationPrecision,
  refitStamped,
  stackScanPatterns,
} from '../../src/defenses/mcldef/options.js';
import { temporaryFolder } from '../helpers/tmp.js';
import { tinyImageFolder } from '../helpers/tiny-data.js';

/** What the test defense saw, checked after the run. */
const seen: { clean: number; heldOut: number; heldOutAccuracy: number[] } = {
  clean: 0,
  heldOut: 0,
  heldOutAccuracy: [],
};

/**
 * Fine-tuning on the clean data, keeping the epoch whose held-out accuracy is best: a real
 * defense of the simplest kind, with its own options.
 */
const fineTune: DefenseEntry = {
  name: 'test-finetune',
  summary: 'fine-tune every layer on the clean data (a defense registered by a test)',
  heldOutFraction: 0.2,
  options: {
    epochs: { type: 'integer', min: 1, default: 3, help: 'fine-tuning epochs' },
    learningRate: { type: 'number', min: 0, default: 0.01, help: 'SGD learning rate' },
  },
  create: (values) => ({
    name: 'test-finetune',
    run: (model, clean, context) => {
      const epochs = values.epochs as number;
      const optimizer = new SGD(model.parameters(), { lr: values.learningRate as number, momentum: 0.9 });
      const heldOut = context.heldOut!;
      seen.clean = clean.count;
      seen.heldOut = heldOut.count;
      const records = [];
      try {
        for (let epoch = 0; epoch < epochs; epoch++) {
          model.train();
          let lossSum = 0;
          for (let start = 0; start < clean.count; start += 16) {
            const count = Math.min(16, clean.count - start);
            lossSum += tidy(() => {
              const images = normalize(toUnitRange(clean.images.narrow(0, start, count)), clean.normalization);
              const labels = clean.labels.narrow(0, start, count);
              const loss = F.crossEntropy(model.forward(images), labels);
              optimizer.zeroGrad();
              loss.backward();
              optimizer.step();
              return loss.item() * count;
            });
          }
          const accuracy = evaluate(model, heldOut, { normalization: heldOut.normalization }).ba;
          seen.heldOutAccuracy.push(accuracy);
          context.progress({ stage: 'fine-tuning', done: epoch + 1, total: epochs, message: `epoch ${epoch + 1}` });
          records.push({ epoch, lr: values.learningRate as number, loss: lossSum / clean.count, ba: null, asr: null });
        }
      } finally {
        optimizer.dispose();
      }
      return {
        model,
        report: {
          target: null,
          detected_target: null,
          changed: true,
          epochs: records,
          seconds: { total: 0 },
          details: { held_out_accuracy: seen.heldOutAccuracy },
        },
      };
    },
  }),
};

/** Runs the CLI in this process (so that the test's registration counts), capturing its output. */
async function runInProcess(args: string[]): Promise<{ out: string; err: string; exitCode: number }> {
  const argv = ['node', 'mcldef', ...args];
  const program = buildProgram(argv);
  let out = '';
  let err = '';
  const writes = { writeOut: (s: string) => (out += s), writeErr: (s: string) => (err += s) };
  for (const command of [program, ...program.commands]) command.exitOverride().configureOutput(writes);
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => ((out += chunk), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => ((err += chunk), true)) as typeof process.stderr.write;
  const previousExit = process.exitCode;
  process.exitCode = 0;
  let exitCode = 0;
  try {
    await program.parseAsync(argv);
    exitCode = Number(process.exitCode ?? 0);
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    exitCode = error.exitCode;
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
    process.exitCode = previousExit;
  }
  return { out, err, exitCode };
}

test('a defense registered from a test is listed, gets its flags in defend --help, and runs', async () => {
  const data = tinyImageFolder();
  const folder = temporaryFolder('mcldef-registry-');
  const cache = join(folder, 'cache');
  const weights = join(folder, 'backdoored.safetensors');
  const trained = spawnSync(
    process.execPath,
    [
      ...['--import', 'tsx', 'src/cli/main.ts', 'train', '--arch', 'wrn-16-1', '--epochs', '3', '--batch-size', '16'],
      ...['--attack', 'badnets-square', '--target', '1', '--poison-rate', '0.2', '--out', weights],
      ...['--data', `imagefolder:${data}`, '--threads', '1', '--quiet', '--cache-dir', cache],
    ],
    { encoding: 'utf8' },
  );
  assert.equal(trained.status, 0, trained.stderr);
  registerDefense(fineTune);
  try {
    const list = await runInProcess(['list']);
    assert.match(list.out, /^ {2}test-finetune +fine-tune every layer on the clean data/m);
    assert.match(list.out, /^ {2}mcldef +MCLDef/m);
    const help = await runInProcess(['defend', '--method', 'test-finetune', '--help']);
    assert.equal(help.exitCode, 0);
    assert.match(help.out, /--epochs <n> +fine-tuning epochs \(default: 3\)/);
    assert.match(help.out, /--learning-rate <n> +SGD learning rate/);
    assert.doesNotMatch(help.out, /--scan-passes/, "MCLDef's flags belong to --method mcldef");
    const bad = await runInProcess(['defend', '--method', 'test-finetune', '--learning-rate', '-1']);
    assert.notEqual(bad.exitCode, 0);
    assert.match(bad.err, /--learning-rate.*must be a number ≥ 0/);
    const out = join(folder, 'tuned.safetensors');
    const run = await runInProcess([
      'defend',
      ...['--method', 'test-finetune', '--epochs', '2', '--weights', weights, '--data', `imagefolder:${data}`],
      ...['--attack', 'badnets-square', '--target', '1', '--clean-ratio', '0.5', '--out', out],
      ...['--threads', '1', '--cache-dir', cache, '--quiet', '--json', join(folder, 'report.json')],
    ]);
    assert.equal(run.exitCode, 0, run.err);
    const report = JSON.parse(readFileSync(join(folder, 'report.json'), 'utf8')) as {
      method: string;
      epochs: { loss: number }[];
      after: { ba: number };
      options: Record<string, unknown>;
      held_out_accuracy: number[];
      evidence: { images: number; trigger: string | null };
      verdict: string[];
    };
    assert.equal(report.method, 'test-finetune');
    assert.equal(report.epochs.length, 2);
    assert.equal(report.options.epochs, 2);
    assert.equal(report.options['learning-rate'], 0.01, 'the default is recorded');
    // The defender's 60 clean images (half of 120): 10 % held out as evidence (2 of each
    // class's 20), then 20 % of the rest for the method's selection (4 of each class's 18).
    assert.deepEqual([seen.clean, seen.heldOut], [42, 12]);
    assert.equal(report.evidence.images, 6);
    assert.equal(report.evidence.trigger, null, 'fine-tuning finds no trigger');
    assert.match(report.verdict.join('\n'), /held-out clean accuracy [\d.]+ % → [\d.]+ % \(6 images/);
    assert.deepEqual(report.held_out_accuracy, seen.heldOutAccuracy);
    // The report's BA is the saved model's on the test split, measured here again.
    const test = loadSplit(`imagefolder:${data}`, 'test', cache);
    const model = createModel('wrn-16-1', { numClasses: 3, inChannels: 3 });
    loadWeights(model, out);
    const ba = noGrad(() => evaluate(model, test, { normalization: test.normalization }).ba);
    assert.equal(report.after.ba, ba);
    model.dispose();
    test.dispose();
  } finally {
    unregisterDefense('test-finetune');
  }
  const gone = await runInProcess(['defend', '--method', 'test-finetune', '--weights', weights]);
  assert.notEqual(gone.exitCode, 0);
  assert.match(gone.err, /argument 'test-finetune' is invalid\. Allowed choices are mcldef/);
});

test('option specs: values are checked against their spec, unknown names refused', () => {
  const epochs = { type: 'integer', min: 1, help: '' } as const;
  assert.equal(parseOptionValue(epochs, '12', '--epochs'), 12);
  assert.equal(parseOptionValue(epochs, 12, '--epochs'), 12);
  assert.throws(() => parseOptionValue(epochs, '1.5', '--epochs'), /--epochs must be an integer ≥ 1, got "1.5"/);
  assert.throws(() => parseOptionValue(epochs, 'x', 'epochs'), OptionError);
  const guard = { type: 'number', min: 0, offWord: true, help: '' } as const;
  assert.equal(parseOptionValue(guard, 'off', '--accuracy-guard'), 'off');
  assert.throws(() => parseOptionValue(guard, 'of', '--accuracy-guard'), /a number ≥ 0 or 'off'/);
  const specs = { epochs, preset: { type: 'choice', choices: ['a', 'b'], default: 'a', help: '' } } as const;
  assert.deepEqual(resolveOptions(specs, { epochs: '3' }, 'x'), { epochs: 3, preset: 'a' });
  assert.throws(() => resolveOptions(specs, { epoch: 3 }, "defense 'x'"), /defense 'x' has no option 'epoch'/);
  assert.throws(() => resolveOptions(specs, { preset: 'c' }, 'x'), /preset must be one of a, b, got "c"/);
});

test("MCLDef's presets: 'auto' precision, inversion patience, 12 epochs, the accuracy guard and (universal triggers) the clean-feature term by default; none of them when published", () => {
  const auto = hasNativeBfloat16() ? 'bfloat16' : 'float32';
  assert.equal(purificationPrecision({ preset: 'default' }), auto);
  assert.equal(purificationPrecision({ preset: 'published' }), 'float32');
  assert.equal(purificationPrecision({ preset: 'published', precision: 'bfloat16' }), 'bfloat16', 'an option wins');
  assert.equal(inversionPatience({ preset: 'default' }), DEFAULT_INVERSION_PATIENCE);
  assert.equal(DEFAULT_INVERSION_PATIENCE, 10);
  assert.equal(inversionPatience({ preset: 'published' }), undefined);
  assert.equal(inversionPatience({ preset: 'published', inversionPatience: 5 }), 5);
  assert.equal(DEFAULT_PURIFICATION_EPOCHS, 12);
  assert.equal(purificationEpochs({ preset: 'default' }), 12);
  assert.equal(purificationEpochs({ preset: 'published' }), 20, 'the published 20 epochs');
  assert.equal(purificationEpochs({ preset: 'published', epochs: 5 }), 5, 'an option wins');
  assert.equal(DEFAULT_CLEAN_FEATURE_WEIGHT, 1);
  assert.equal(cleanFeatureWeight({ preset: 'default' }), 1);
  assert.equal(cleanFeatureWeight({ preset: 'published' }), 0, 'the published loss alone');
  assert.equal(cleanFeatureWeight({ preset: 'default', cleanFeatureWeight: 0 }), 0, 'an option wins');
  assert.equal(cleanFeatureWeight({ preset: 'published', cleanFeatureWeight: 2 }), 2);
  assert.equal(DEFAULT_ACCURACY_GUARD, 2);
  assert.equal(accuracyGuard({ preset: 'default' }), 2);
  assert.equal(accuracyGuard({ preset: 'published' }), undefined);
  assert.equal(accuracyGuard({ preset: 'default', accuracyGuard: 'off' }), undefined);
  assert.equal(accuracyGuard({ preset: 'published', accuracyGuard: 2 }), 2, 'an option wins');
  // The typed options: the specs' defaults, the preset-decided ones left unset.
  assert.deepEqual(mcldefOptions({}), {
    preset: 'default',
    scanPasses: 30,
    anomalyScale: 'log',
    maxSizeFraction: 1,
    scanRestarts: 2,
    minStability: 0.5,
    minSeparationRatio: 1,
    strongSizeFraction: 0.1,
    warpShift: 0.5,
    warpPasses: 10,
    signalAmplitude: 20,
    inversionPrecision: 'float32',
    batchSize: 64,
    temperature: 0.5,
    cleanWeight: 0,
    cleanWeightFrom: 0,
    stampedWeight: 0,
    refitHead: false,
    refitStamped: true,
    stackScanPatterns: true,
    recalibrateBn: false,
    dropLast: true,
  });
  assert.equal(refitStamped({ preset: 'default', refitStamped: true }), true);
  assert.equal(refitStamped({ preset: 'default', refitStamped: false }), false);
  assert.equal(refitStamped({ preset: 'published', refitStamped: true }), false, 'published: no re-fit at all');
  assert.equal(stackScanPatterns({ preset: 'default', stackScanPatterns: true }), true);
  assert.equal(stackScanPatterns({ preset: 'published', stackScanPatterns: true }), false, 'published: one trigger');
  assert.deepEqual(changesFromPublished(mcldefOptions({ precision: 'float32' })), {
    epochs: 12,
    clean_feature_weight: 1,
    refit_stamped: true,
    stack_scan_patterns: true,
    accuracy_guard: 2,
  });
  assert.deepEqual(changesFromPublished(mcldefOptions({ preset: 'published' })), {});
  assert.equal(mcldefOptions({ epochs: 3, accuracyGuard: 'off' }).epochs, 3);
  assert.equal(accuracyGuard(mcldefOptions({ accuracyGuard: 'off' })), undefined);
});

test('defend() frees what it made: the live tensor count returns to where it started', async () => {
  const { defend } = await import('../../src/defenses/pipeline.js');
  const data = tinyImageFolder();
  const cache = join(temporaryFolder('mcldef-registry-live-'), 'cache');
  const clean = loadSplit(`imagefolder:${data}`, 'train', cache);
  const test = loadSplit(`imagefolder:${data}`, 'test', cache);
  const model = createModel('wrn-16-1', { numClasses: 3, inChannels: 3 });
  const before = liveTensorCount();
  const { report } = await defend({
    model,
    clean,
    test,
    target: 1,
    options: { passes: 2, epochs: 1, batchSize: 32 },
  });
  assert.equal(report.epochs.length, 1);
  assert.equal(liveTensorCount(), before);
  // A defense that throws leaves nothing behind either (here: the inversion's target check).
  await assert.rejects(defend({ model, clean, test, target: 7 }), /target class 7 is out of range for 3 classes/);
  assert.equal(liveTensorCount(), before);
  model.dispose();
  clean.dispose();
  test.dispose();
});

test("every built-in defense's flags fit beside defend's own: --help works for each", async () => {
  const { defenseNames } = await import('../../src/defenses/index.js');
  assert.deepEqual(defenseNames(), ['mcldef', 'ft', 'fp', 'nad', 'nc', 'anp', 'i-bau', 'sau', 'clp']);
  for (const name of defenseNames()) {
    const help = await runInProcess(['defend', '--method', name, '--help']);
    assert.equal(help.exitCode, 0, `${name}: ${help.err}`);
    assert.match(help.out, new RegExp(`--method ${name}: `));
  }
});

test("every registered defense's defaults pass its own option checks (as the CLI and grid files give them)", () => {
  for (const entry of defenseEntries()) {
    for (const [name, spec] of Object.entries(entry.options)) {
      if (spec.default === undefined) continue;
      assert.equal(parseOptionValue(spec, spec.default, name), spec.default, `${entry.name} ${name}`);
    }
  }
});
