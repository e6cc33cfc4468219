// ANP (Adversarial Neuron Pruning, Wu & Wang, NeurIPS 2021): backdoor neurons are the ones
// whose small perturbation flips the model. Every batch-norm channel gets a mask m ∈ [0, 1]
// (starting at 1) and multiplicative noise on its scale and shift, γ·(m + δ) and β·(1 + ξ);
// the noise takes one signed ascent step on the clean loss, then the masks descend on
// α·CE(masked) + (1 − α)·CE(masked and perturbed). Channels whose mask ends below the
// threshold are pruned (their γ set to 0) in the original weights. The ANP authors' code
// (optimize_mask_cifar.py, prune_neuron_cifar.py) and BackdoorBench defense/anp.py.
import { noGrad } from '../engine/autograd.js';
import { ones, rand, tensor, zeros } from '../engine/creation.js';
import * as F from '../engine/functional.js';
import { SGD } from '../engine/optim/sgd.js';
import { keep, tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import type { ImageSplit } from '../data/dataset.js';
import { augmentBatch } from '../data/augment.js';
import { normalize, toUnitRange } from '../data/normalization.js';
import { seededRandom } from '../data/rng.js';
import { BatchNorm2d } from '../nn/layers.js';
import type { Classifier } from '../nn/models/classifier.js';
import type { StateDict } from '../nn/module.js';
import {
  type Defense,
  type DefenseContext,
  type DefenseEntry,
  type DefenseOutcome,
  untargetedOutcome,
} from './defense.js';
import { defenseAugmentation } from './finetune.js';
import { type OptionSpecs, type OptionValues, withDefaults } from './options.js';

export interface AnpSettings {
  /** Mask updates (2000). */
  iterations: number;
  /** Images per update, drawn with replacement (128). */
  batchSize: number;
  /** SGD learning rate of the masks (0.2), momentum 0.9. */
  lr: number;
  /** Bound of the noise δ, ξ (0.4). */
  anpEps: number;
  /** Signed ascent steps of the noise per update (1). */
  anpSteps: number;
  /** Weight of the unperturbed loss (0.2). */
  anpAlpha: number;
  /** Prune a channel whose mask ends below this (0.2). */
  threshold: number;
}

export const ANP_DEFAULTS: AnpSettings = {
  iterations: 2000,
  batchSize: 128,
  lr: 0.2,
  anpEps: 0.4,
  anpSteps: 1,
  anpAlpha: 0.2,
  threshold: 0.2,
};

const ANP_OPTIONS: OptionSpecs = {
  iterations: { type: 'integer', min: 1, default: ANP_DEFAULTS.iterations, help: 'mask updates' },
  batchSize: {
    type: 'integer',
    min: 1,
    default: ANP_DEFAULTS.batchSize,
    help: 'images per update (drawn with replacement)',
  },
  lr: { type: 'number', min: 0, default: ANP_DEFAULTS.lr, help: 'SGD learning rate of the masks (momentum 0.9)' },
  anpEps: {
    type: 'number',
    min: 0,
    default: ANP_DEFAULTS.anpEps,
    help: 'bound of the neuron noise (0: no perturbation)',
  },
  anpSteps: {
    type: 'integer',
    min: 1,
    default: ANP_DEFAULTS.anpSteps,
    help: 'signed ascent steps of the noise per update',
  },
  anpAlpha: { type: 'number', min: 0, max: 1, default: ANP_DEFAULTS.anpAlpha, help: 'weight of the unperturbed loss' },
  threshold: {
    type: 'number',
    min: 0,
    max: 1,
    default: ANP_DEFAULTS.threshold,
    help: 'prune a channel whose mask ends at or below this',
  },
};

function anpSettings(values: OptionValues): AnpSettings {
  return withDefaults(ANP_OPTIONS, values) as unknown as AnpSettings;
}

/** One batch norm's mask and noise, and its forward with them in force. */
export class PerturbedBatchNorm {
  readonly mask: Tensor;
  readonly weightNoise: Tensor;
  readonly biasNoise: Tensor;
  /** Whether the noise is applied (the mask always is). */
  perturbed = false;
  readonly #forward: (input: Tensor) => Tensor;

  constructor(readonly bn: BatchNorm2d) {
    if (bn.weight === null || bn.bias === null) throw new Error('ANP: a batch norm without scale and shift');
    const channels = bn.numFeatures;
    const device = bn.weight.device;
    this.mask = keep(ones([channels], { device }).requiresGrad_(true));
    this.weightNoise = keep(zeros([channels], { device }).requiresGrad_(true));
    this.biasNoise = keep(zeros([channels], { device }).requiresGrad_(true));
    this.#forward = bn.forward.bind(bn);
    bn.forward = (input) => this.forward(input);
  }

  /** BN(x) with scale γ·(m + δ) and shift β·(1 + ξ) (δ = ξ = 0 unless perturbed). */
  forward(input: Tensor): Tensor {
    const { bn } = this;
    return tidy(() => {
      const scale = this.perturbed ? this.mask.add(this.weightNoise) : this.mask;
      const shift = this.perturbed ? this.biasNoise.add(1) : null;
      return F.batchNorm(input, bn.runningMean, bn.runningVar, {
        weight: bn.weight!.mul(scale),
        bias: shift === null ? bn.bias! : bn.bias!.mul(shift),
        training: bn.training || bn.runningMean === null,
        momentum: bn.momentum ?? 0,
        eps: bn.eps,
      });
    });
  }

  /** δ, ξ ~ U(−eps, eps). */
  resetNoise(eps: number): void {
    noGrad(() =>
      tidy(() => {
        for (const noise of [this.weightNoise, this.biasNoise]) {
          noise.copy_(
            rand(noise.shape, { device: noise.device })
              .mul(2 * eps)
              .sub(eps),
          );
        }
      }),
    );
  }

  /** Restores the batch norm's own forward and frees the tensors. */
  dispose(): void {
    this.bn.forward = this.#forward;
    this.mask.dispose();
    this.weightNoise.dispose();
    this.biasNoise.dispose();
  }
}

/** The channels whose mask ends at or below `threshold`, per batch norm (prune_neuron_cifar.py). */
export function channelsToPrune(masks: readonly number[][], threshold: number): number[][] {
  return masks.map((mask) => mask.flatMap((value, channel) => (value <= threshold ? [channel] : [])));
}

export class AdversarialNeuronPruning implements Defense {
  readonly name = 'anp';

  constructor(readonly settings: AnpSettings = ANP_DEFAULTS) {}

  run(model: Classifier, clean: ImageSplit, context: DefenseContext): DefenseOutcome {
    const s = this.settings;
    const started = performance.now();
    const named = [...model.namedModules()].filter(
      (entry): entry is [string, BatchNorm2d] => entry[1] instanceof BatchNorm2d,
    );
    if (named.length === 0) throw new Error('ANP needs batch-norm layers; this model has none');
    const masks = this.optimizeMasks(
      model,
      clean,
      named.map(([, bn]) => bn),
      context,
    );
    const pruned = channelsToPrune(masks, s.threshold);
    noGrad(() =>
      named.forEach(([, bn], i) => {
        if (pruned[i]!.length === 0) return;
        tidy(() => {
          const keepMask = new Float32Array(bn.numFeatures).fill(1);
          for (const channel of pruned[i]!) keepMask[channel] = 0;
          bn.weight!.mul_(tensor(keepMask, { device: bn.weight!.device }));
        });
      }),
    );
    const total = pruned.reduce((sum, channels) => sum + channels.length, 0);
    const all = named.reduce((sum, [, bn]) => sum + bn.numFeatures, 0);
    context.log(`ANP: pruned ${total} of ${all} batch-norm channels (mask below ${s.threshold})`);
    const seconds = (performance.now() - started) / 1000;
    return untargetedOutcome(model, {
      seconds: { masks: seconds },
      ...(total > 0 ? {} : { unchanged: `no mask ended at or below ${s.threshold}` }),
      details: {
        anp: {
          settings: { ...s },
          pruned: total,
          channels: all,
          layers: named.map(([name], i) => ({ layer: name, pruned: pruned[i]!, masks: masks[i]! })),
        },
      },
    });
  }

  /** The masks after the optimization; the model's weights and statistics are as before. */
  private optimizeMasks(model: Classifier, clean: ImageSplit, bns: BatchNorm2d[], context: DefenseContext): number[][] {
    const s = this.settings;
    const state: StateDict = new Map();
    for (const [key, handle] of model.stateDict()) {
      state.set(key, keep(handle.clone()));
      handle.dispose();
    }
    const flags = model.parameters().map((p) => [p, p.requiresGrad] as const);
    const wasTraining = model.training;
    const perturbed = bns.map((bn) => new PerturbedBatchNorm(bn));
    const maskOptimizer = new SGD(
      perturbed.map((p) => p.mask),
      { lr: s.lr, momentum: 0.9 },
    );
    // Only for zeroing the noise's gradients: its signed step is taken by hand.
    const noiseOptimizer = new SGD(
      perturbed.flatMap((p) => [p.weightNoise, p.biasNoise]),
      { lr: 0 },
    );
    const random = seededRandom(context.seed);
    const augment = defenseAugmentation(clean, context.dataKind);
    try {
      model.requiresGrad_(false);
      // As the authors' code: the masks are learned in train mode (batch statistics).
      model.train();
      for (let iteration = 0; iteration < s.iterations; iteration++) {
        const picks = Int32Array.from({ length: Math.min(s.batchSize, clean.count) }, () =>
          Math.floor(random() * clean.count),
        );
        tidy(() => {
          const index = tensor(picks, { dtype: 'int64' });
          // The authors' clean images go through the training transform: random crop and flip.
          const augmented = augmentBatch(toUnitRange(clean.images.indexSelect(0, index)), augment, random);
          const images = normalize(augmented, clean.normalization);
          const labels = clean.labels.indexSelect(0, index);
          if (s.anpEps > 0) {
            for (const p of perturbed) p.resetNoise(s.anpEps);
            for (let step = 0; step < s.anpSteps; step++) {
              for (const p of perturbed) p.perturbed = true;
              const ascent = F.crossEntropy(model.forward(images), labels).neg();
              noiseOptimizer.zeroGrad();
              ascent.backward();
              // A signed step up the clean loss (down −CE); as the authors' code, not clipped after it.
              noGrad(() => {
                for (const p of perturbed) {
                  for (const noise of [p.weightNoise, p.biasNoise]) {
                    const grad = noise.grad;
                    if (grad !== null) noise.sub_(grad.sign().mul(s.anpEps / s.anpSteps));
                  }
                }
              });
            }
          }
          let robust: Tensor | null = null;
          if (s.anpEps > 0) {
            for (const p of perturbed) p.perturbed = true;
            robust = F.crossEntropy(model.forward(images), labels);
          }
          for (const p of perturbed) p.perturbed = false;
          const natural = F.crossEntropy(model.forward(images), labels);
          const loss = robust === null ? natural : natural.mul(s.anpAlpha).add(robust.mul(1 - s.anpAlpha));
          maskOptimizer.zeroGrad();
          loss.backward();
          maskOptimizer.step();
          noGrad(() => {
            for (const p of perturbed) p.mask.clamp_(0, 1);
          });
          if (!Number.isFinite(loss.item())) throw new Error(`ANP: the loss is not finite at iteration ${iteration}`);
        });
        if ((iteration + 1) % 100 === 0 || iteration + 1 === s.iterations) {
          context.progress({
            stage: 'masks',
            done: iteration + 1,
            total: s.iterations,
            message: `ANP iteration ${iteration + 1}/${s.iterations}`,
          });
        }
      }
      return perturbed.map((p) => Array.from(p.mask.toFloat64Array()));
    } finally {
      maskOptimizer.dispose();
      noiseOptimizer.dispose();
      for (const p of perturbed) p.dispose();
      for (const [parameter, requiresGrad] of flags) parameter.requiresGrad_(requiresGrad);
      // Train mode moved the running statistics: the weights and buffers go back as they were.
      model.loadStateDict(state);
      for (const t of state.values()) t.dispose();
      model.train(wasTraining);
    }
  }
}

export const anpEntry: DefenseEntry = {
  name: 'anp',
  summary: 'Adversarial Neuron Pruning (ANP): prune the batch-norm channels that neuron noise turns against the labels',
  options: ANP_OPTIONS,
  create: (values) => new AdversarialNeuronPruning(anpSettings(values)),
};
