// Attacks that learn their trigger while the classifier trains, through the training hook
// alone: a learnable additive pattern, defined and registered here, trained jointly with a
// small classifier on synthetic data. And the built-in attacks train exactly as before.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';

import { type Tensor, dispose, manualSeed, setNumThreads, tensor, tidy, zeros } from '../../src/index.js';
import * as F from '../../src/engine/functional.js';
import { keep } from '../../src/engine/scope.js';
import {
  Attack,
  type AttackFactoryArgs,
  type AttackTrainingContext,
  type AttackTrainingHook,
  type AttackTrainingStart,
  attackNames,
  createAttack,
  registerAttack,
} from '../../src/attacks/index.js';
import { normalize } from '../../src/data/normalization.js';
import type { ImageSplit } from '../../src/data/dataset.js';
import { evaluate } from '../../src/eval/metrics.js';
import { planPoisoning } from '../../src/train/poisoned-batches.js';
import { trainModel } from '../../src/train/trainer.js';
import { SMALL_TRAINING, TinyNet, quadrantSplit } from '../helpers/synthetic.js';
import { MemoryStore } from './memory-store.js';

// A new attack's options join AttackOptions by augmentation, without editing the registry.
declare module '../../src/attacks/registry.js' {
  interface AttackOptions {
    /** learned-pattern: the most a pixel may change. */
    learnedEpsilon?: number;
    /** learned-pattern: weight of the extra loss (0: none, the trigger learns through the poisoned samples only). */
    learnedWeight?: number;
  }
}

/** What the trainer did with the hook, for the assertions. */
interface HookLog {
  starts: AttackTrainingStart[];
  ends: number;
  /** The extra loss of every batch with the batch size. */
  losses: { epoch: number; value: number; size: number }[];
  /** Split indices of the images `apply` stamped between start and end (training and its evaluations). */
  stamped: Set<number>;
  /** Whether every batch's poisoned positions carried the target label. */
  poisonedLabelsAreTarget: boolean;
}

/**
 * x' = clip(x + ε·tanh(θ)·m) with θ (1×C×H×W, from zero: no trigger at first) trained with
 * the classifier and m the 3×3 bottom-right corner, which no class of the synthetic data
 * uses: a clean model does not respond to it. The extra loss (LIRA's idea) stamps the batch's
 * other non-target samples and sends them to the target, so the trigger works on images the
 * poisoning never touched.
 */
class LearnedPattern extends Attack {
  readonly name = 'learned-pattern';
  readonly theta: Tensor;
  readonly mask: Tensor;
  readonly epsilon: number;
  readonly weight: number;
  readonly log: HookLog = { starts: [], ends: 0, losses: [], stamped: new Set(), poisonedLabelsAreTarget: true };
  #training = false;
  readonly #hook: AttackTrainingHook;

  constructor({ config, geometry, policy, options }: AttackFactoryArgs) {
    super(config, geometry, policy);
    this.epsilon = options.learnedEpsilon ?? 0.5;
    this.weight = options.learnedWeight ?? 1;
    const { channels, height, width } = geometry;
    this.theta = keep(zeros([1, channels, height, width], { requiresGrad: true }));
    this.mask = keep(
      tidy(() => {
        const mask = zeros([1, 1, height, width]);
        mask
          .narrow(2, height - 3, 3)
          .narrow(3, width - 3, 3)
          .fill_(1);
        return mask;
      }),
    );
    this.#hook = {
      lr: 0.05,
      parameters: () => [this.theta],
      start: (run) => {
        this.log.starts.push(run);
        this.#training = true;
      },
      loss: (context) => this.#extraLoss(context),
      end: () => {
        this.log.ends++;
        this.#training = false;
      },
    };
  }

  apply(images: Tensor, indices?: Tensor): Tensor {
    if (this.#training && indices !== undefined) {
      for (const index of indices.toTypedArray() as BigInt64Array) this.log.stamped.add(Number(index));
    }
    return tidy(() => images.add(this.pattern()).clamp(0, 1));
  }

  /** ε·tanh(θ)·m, in the graph of θ. */
  pattern(): Tensor {
    return tidy(() => this.theta.tanh().mul(this.mask).mul(this.epsilon));
  }

  override trainingHook(): AttackTrainingHook {
    return this.#hook;
  }

  #extraLoss(context: AttackTrainingContext): Tensor | undefined {
    const target = this.config.target;
    const labels = Array.from(context.labels.toTypedArray() as BigInt64Array, Number);
    if (![...context.poisoned].every((k) => labels[k] === target)) this.log.poisonedLabelsAreTarget = false;
    if (this.weight === 0) return undefined;
    const excluded = new Set([...context.poisoned, ...context.cross]);
    const chosen = labels.flatMap((label, k) => (excluded.has(k) || label === target ? [] : [k]));
    if (chosen.length === 0) return undefined;
    const { mean, std } = context.normalization;
    const channels = [1, mean.length, 1, 1];
    const unit = context.images
      .indexSelect(0, tensor(Int32Array.from(chosen), { dtype: 'int64' }))
      .mul(tensor(std, { shape: channels }))
      .add(tensor(mean, { shape: channels }));
    const logits = context.model.forward(normalize(this.apply(unit), context.normalization));
    const loss = F.crossEntropy(logits, tensor(new Int32Array(chosen.length).fill(target), { dtype: 'int64' })).mul(
      this.weight,
    );
    this.log.losses.push({ epoch: context.epoch, value: loss.item(), size: context.labels.size(0) });
    return loss;
  }

  override dispose(): void {
    this.theta.dispose();
    this.mask.dispose();
  }
}

registerAttack({
  name: 'learned-pattern',
  summary: 'an additive pattern learned jointly with the classifier',
  policies: ['all-to-one', 'all-to-all'],
  create: (args) => new LearnedPattern(args),
});

const geometry = { channels: 3, height: 12, width: 12 };
const config = SMALL_TRAINING;

function learnedPattern(options: { learnedWeight?: number } = {}): LearnedPattern {
  const attack = createAttack({
    name: 'learned-pattern',
    target: 0,
    poisonRate: 0.1,
    seed: 5,
    numClasses: 4,
    geometry,
    options,
  });
  assert.ok(attack instanceof LearnedPattern);
  return attack;
}

/** A TinyNet with the same initial weights every call. */
function freshModel(): TinyNet {
  manualSeed(11);
  return new TinyNet();
}

test('a registered attack is listed and built by createAttack', () => {
  assert.equal(attackNames().at(-1), 'learned-pattern');
  const attack = learnedPattern();
  assert.equal(attack.policy, 'all-to-one');
  assert.equal(attack.epsilon, 0.5, 'the default');
  const other = createAttack({ name: 'learned-pattern', numClasses: 4, geometry, options: { learnedEpsilon: 0.3 } });
  assert.equal((other as LearnedPattern).epsilon, 0.3, 'options reach the attack');
  other.dispose();
  assert.equal(attack.trainingHook().parameters()[0], attack.theta);
  attack.dispose();
});

test('a trigger learned with the classifier: parameters trained, the extra loss applied, a working backdoor', () => {
  setNumThreads(1);
  const train = quadrantSplit(800, 1);
  const testSplit = quadrantSplit(300, 2);
  const attack = learnedPattern();
  const model = freshModel();
  const result = trainModel({ model, train, test: testSplit, attack, config });
  const last = result.epochs.at(-1)!;
  const { log } = attack;
  console.log(
    `learned pattern: BA ${last.ba?.toFixed(1)} %, ASR ${last.asr?.toFixed(1)} %, extra loss ` +
      `${result.epochs[0]!.attack_loss?.toFixed(3)} → ${last.attack_loss?.toFixed(3)} in ${result.seconds.toFixed(1)} s`,
  );

  // The hook's calls: one start, one end, one extra loss per batch.
  const batches = Math.ceil(800 / 32);
  assert.deepEqual(
    log.starts.map(({ epochs, firstEpoch, batchesPerEpoch }) => [epochs, firstEpoch, batchesPerEpoch]),
    [[6, 0, batches]],
  );
  assert.equal(log.starts[0]!.model, model);
  assert.equal(log.ends, 1);
  assert.equal(log.losses.length, 6 * batches);
  assert.ok(log.poisonedLabelsAreTarget, 'poisoned positions carry the target label');

  // The extra loss entered the epoch records (their sample-weighted mean) and fell as the trigger learned.
  result.epochs.forEach((record, epoch) => {
    const losses = log.losses.filter((entry) => entry.epoch === epoch);
    const mean = losses.reduce((sum, entry) => sum + entry.value * entry.size, 0) / 800;
    assert.ok(Math.abs(record.attack_loss! - mean) < 1e-9, `epoch ${epoch}: ${record.attack_loss} against ${mean}`);
  });
  assert.ok(last.attack_loss! < result.epochs[0]!.attack_loss! / 2, 'the extra loss fell');

  // The pattern moved from zero, within its bound and its corner, and the model obeys it.
  const pattern = tidy(() => attack.pattern().detach());
  tidy(() => {
    const largest = pattern.abs().max().item();
    assert.ok(largest > 0.1 && largest <= 0.5 + 1e-6, `largest pixel change ${largest}`);
    assert.equal(pattern.narrow(2, 0, 9).abs().max().item(), 0, 'nothing outside the corner');
  });
  const normalization = testSplit.normalization;
  const metrics = evaluate(model, testSplit, { normalization, trigger: attack });
  assert.ok(metrics.ba >= 90, `BA ${metrics.ba}`);
  assert.ok(metrics.asr >= 90, `ASR ${metrics.asr}`);
  assert.equal(metrics.asr, last.asr, 'the trainer evaluated the same trigger');
  // A backdoor the classifier learned, not a feature of the data: a clean model ignores the trigger.
  const clean = freshModel();
  trainModel({ model: clean, train, config });
  const cleanMetrics = evaluate(clean, testSplit, { normalization, trigger: attack });
  assert.ok(
    cleanMetrics.ba >= 90 && cleanMetrics.asr < 10,
    `clean model: BA ${cleanMetrics.ba}, ASR ${cleanMetrics.asr}`,
  );

  // The same run without the extra loss: the trigger still learns through the poisoned
  // samples, but differently, so the extra term did reach the backward pass.
  const plain = learnedPattern({ learnedWeight: 0 });
  const plainModel = freshModel();
  const plainResult = trainModel({ model: plainModel, train, attack: plain, config });
  assert.equal(plain.log.losses.length, 0);
  // Without a test split only training stamps: every poisoned sample, and only those, with its split index.
  const plan = planPoisoning(train, plain);
  assert.equal(plan.poisoned.length, 80);
  assert.deepEqual(
    [...plain.log.stamped].sort((a, b) => a - b),
    [...plan.poisoned],
  );
  assert.ok(plainResult.epochs.every((record) => record.attack_loss === undefined));
  tidy(() => {
    const plainPattern = plain.pattern();
    const [moved, apart] = [plainPattern.abs().max().item(), plainPattern.sub(pattern).abs().max().item()];
    console.log(
      `clean model ASR ${cleanMetrics.asr.toFixed(1)} %; without the extra loss the pattern moved ${moved.toFixed(3)}, ` +
        `${apart.toFixed(3)} from the joint one`,
    );
    assert.ok(moved > 0.01, 'learned through the poisoned samples');
    assert.ok(apart > 0.01, 'the extra loss changed the trigger');
  });
  for (const item of [model, clean, plainModel, attack, plain, pattern, train, testSplit]) item.dispose();
});

test('a run with a learned trigger resumes from its checkpoint with the same trigger and weights', () => {
  setNumThreads(1);
  const train = quadrantSplit(200, 4);
  const short = { ...config, epochs: 4 };
  const reference = learnedPattern();
  const referenceModel = freshModel();
  trainModel({ model: referenceModel, train, attack: reference, config: short });

  const store = new MemoryStore();
  const first = learnedPattern();
  let batches = 0;
  const stopped = trainModel({
    model: freshModel(),
    train,
    attack: first,
    config: short,
    checkpointPath: 'ckpt',
    store,
    shouldStop: () => ++batches === 7 * 2 + 3, // inside epoch 2 (7 batches an epoch)
  });
  assert.equal(stopped.stopped, true);
  assert.equal(first.log.ends, 1, 'end is called after a stop too');
  assert.ok(store.files.get('ckpt')!.tensors.has('attack.0'));
  // A new process: a fresh trigger (zero) and fresh weights; the checkpoint restores both.
  const again = learnedPattern();
  manualSeed(99);
  const againModel = new TinyNet();
  const resumed = trainModel({ model: againModel, train, attack: again, config: short, checkpointPath: 'ckpt', store });
  assert.equal(resumed.resumedFrom, 2);
  assert.deepEqual(again.log.starts[0]!.firstEpoch, 2);
  tidy(() => assert.equal(again.theta.sub(reference.theta).abs().max().item(), 0, 'the trigger differs'));
  const a = referenceModel.stateDict();
  const b = againModel.stateDict();
  for (const [key, value] of a) {
    tidy(() => assert.equal(value.sub(b.get(key)!).abs().max().item(), 0, `${key} differs after resume`));
  }
  assert.equal(store.exists('ckpt'), false, 'removed once complete');
  dispose([a, b]);
  for (const item of [reference, referenceModel, first, again, againModel, train]) item.dispose();
});

function digest(values: Int32Array): string {
  return createHash('sha256')
    .update(Buffer.from(values.buffer, values.byteOffset, values.byteLength))
    .digest('hex')
    .slice(0, 16);
}

test('built-in attacks train as before the hook (numbers recorded at commit 86ed920)', () => {
  setNumThreads(1);
  const train: ImageSplit = quadrantSplit(200, 4);
  const testSplit = quadrantSplit(100, 5);
  // [plan: labels, poisoned, cross digests], per epoch [loss, train acc, BA, ASR, RA].
  const recorded = {
    'badnets-square': [
      ['3cf24eac768e8cd6', 'f55b8904c5528c60', 'e3b0c44298fc1c14'],
      [
        [1.4219032669067382, 23, 26, 100, 0],
        [1.35828595161438, 30.5, 26, 100, 0],
      ],
    ],
    wanet: [
      ['3cf24eac768e8cd6', 'f55b8904c5528c60', '5979337006d8e4e3'],
      [
        [1.3902056407928467, 28.5, 26, 0, 35.13513513513514],
        [1.3704092693328858, 32, 30, 5.405405405405405, 35.13513513513514],
      ],
    ],
    sig: [
      ['2f86d6b59f550979', 'c382b37b400f95c4', 'e3b0c44298fc1c14'],
      [
        [1.3966879367828369, 22, 28, 0, 37.83783783783784],
        [1.3740937852859496, 29.5, 28, 0, 37.83783783783784],
      ],
    ],
  } as const;
  for (const [name, [planDigests, epochs]] of Object.entries(recorded)) {
    const attack = createAttack({ name, target: 1, poisonRate: 0.1, seed: 3, numClasses: 4, geometry });
    assert.equal(attack.trainingHook(), undefined);
    const plan = planPoisoning(train, attack);
    assert.deepEqual([digest(plan.labels), digest(plan.poisoned), digest(plan.cross)], planDigests, name);
    const model = new TinyNet();
    const result = trainModel({
      model,
      train,
      test: testSplit,
      attack,
      config: { ...config, epochs: 2, augment: { horizontalFlip: true, cropPadding: 1 } },
    });
    result.epochs.forEach((record, epoch) => {
      const [loss, ...percentages] = epochs[epoch]!;
      // Float sums may differ in the last bits on another CPU; a changed sample would move them far more.
      assert.ok(Math.abs(record.loss - loss) < 1e-4, `${name} epoch ${epoch}: loss ${record.loss}, recorded ${loss}`);
      assert.deepEqual([record.train_acc, record.ba, record.asr, record.ra], percentages, `${name} epoch ${epoch}`);
      assert.equal(record.attack_loss, undefined);
    });
    model.dispose();
    attack.dispose();
  }
  train.dispose();
  testSplit.dispose();
});
