// i-BAU (Implicit Backdoor Adversarial Unlearning, Zeng et al., ICLR 2022): unlearning as a
// minimax problem. Each round finds one universal perturbation δ (in [0, 1] pixel units, as
// the authors' code, whose models take unnormalized pixels) that raises the clean loss, then
// updates the model against it with the implicit hypergradient: the outer loss (cross-entropy
// with δ on a few images of each batch) is differentiated through the inner problem's fixed
// point by K fixed-point iterations of vector–Jacobian products. The authors' code (YiZeng623/I-BAU, defense.py and hypergrad.py),
// whose settings are the defaults; BackdoorBench's port (defense/i-bau.py) is
// `space: 'normalized', lr: 1e-4, batchSize: 256`.
import { grad, noGrad } from '../engine/autograd.js';
import { tensor, zeros } from '../engine/creation.js';
import * as F from '../engine/functional.js';
import { Adam } from '../engine/optim/adam.js';
import { SGD } from '../engine/optim/sgd.js';
import { keep, tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import type { ImageSplit } from '../data/dataset.js';
import { normalize, toUnitRange } from '../data/normalization.js';
import { permutation } from '../data/rng.js';
import type { Classifier } from '../nn/models/classifier.js';
import {
  type Defense,
  type DefenseContext,
  type DefenseEntry,
  type DefenseEpoch,
  type DefenseOutcome,
  untargetedOutcome,
  endEpoch,
} from './defense.js';
import { type OptionSpecs, type OptionValues, withDefaults } from './options.js';

export interface IbauSettings {
  /** Rounds of perturbation and unlearning (n_rounds: 5). */
  rounds: number;
  /** Fixed-point iterations of the hypergradient (K: 5). */
  k: number;
  /** Images per batch (100, the authors'; BackdoorBench 256). */
  batchSize: number;
  /** Adam learning rate of the model (1e-3, the authors'; BackdoorBench 1e-4), betas (0.9, 0.999), no weight decay. */
  lr: number;
  /** SGD learning rate of the universal perturbation (10). */
  perturbationLr: number;
  /** Step of the inner gradient-descent map (0.1). */
  innerLr: number;
  /** Weight of ‖δ‖² in the inner losses (0.001). */
  regularization: number;
  /** Fraction of each batch that gets δ in the outer loss (0.01; at least one image). */
  portion: number;
  /**
   * Where δ lives: 'pixel' ([0, 1] pixel units, the authors' code) or 'normalized' (the model's
   * normalized input, BackdoorBench's port: the same step sizes then move δ σ² ≈ 0.04 times as
   * far in pixels on CIFAR-10, and weigh ‖δ‖² 1/σ² times as much).
   */
  space: 'pixel' | 'normalized';
}

export const IBAU_DEFAULTS: IbauSettings = {
  rounds: 5,
  k: 5,
  batchSize: 100,
  lr: 1e-3,
  perturbationLr: 10,
  innerLr: 0.1,
  regularization: 0.001,
  portion: 0.01,
  space: 'pixel',
};

const IBAU_OPTIONS: OptionSpecs = {
  rounds: { type: 'integer', min: 1, default: IBAU_DEFAULTS.rounds, help: 'rounds of perturbation and unlearning' },
  k: { type: 'integer', min: 1, default: IBAU_DEFAULTS.k, help: 'fixed-point iterations of the hypergradient' },
  batchSize: { type: 'integer', min: 1, default: IBAU_DEFAULTS.batchSize, help: 'images per batch' },
  lr: { type: 'number', min: 0, default: IBAU_DEFAULTS.lr, help: "Adam learning rate of the model's unlearning" },
  perturbationLr: {
    type: 'number',
    min: 0,
    default: IBAU_DEFAULTS.perturbationLr,
    help: 'SGD learning rate of the universal perturbation',
  },
  innerLr: { type: 'number', min: 0, default: IBAU_DEFAULTS.innerLr, help: 'step of the inner gradient-descent map' },
  regularization: {
    type: 'number',
    min: 0,
    default: IBAU_DEFAULTS.regularization,
    help: 'weight of the squared norm of the perturbation',
  },
  portion: {
    type: 'number',
    min: 0,
    max: 1,
    default: IBAU_DEFAULTS.portion,
    help: 'fraction of each batch perturbed in the outer loss (at least one image)',
  },
  space: {
    type: 'choice',
    choices: ['pixel', 'normalized'],
    default: IBAU_DEFAULTS.space,
    help: "the perturbation's units: pixel ([0, 1], the authors') or normalized (BackdoorBench's)",
  },
};

function ibauSettings(values: OptionValues): IbauSettings {
  return withDefaults(IBAU_OPTIONS, values) as unknown as IbauSettings;
}

/**
 * The implicit hypergradient by fixed-point iteration (hypergrad.py's `fixed_point`): with
 * Φ(w, θ) the inner map (one gradient step) and f the outer loss, v ← (∂Φ/∂w)ᵀ v + ∂f/∂w for K
 * steps from v = 0, then df/dθ ≈ (∂Φ/∂θ)ᵀ v + ∂f/∂θ. `innerMap` must build its graph with
 * create-graph gradients so that it can be differentiated again. Returns df/dθ (the caller
 * disposes them); `params` are detached copies that require gradients.
 */
export function fixedPointHypergradient(
  params: readonly Tensor[],
  hparams: readonly Tensor[],
  k: number,
  innerMap: (params: readonly Tensor[]) => Tensor[],
  outerLoss: (params: readonly Tensor[]) => Tensor,
): Tensor[] {
  return tidy(() => {
    const outer = outerLoss(params);
    const outerGrads = grad(outer, [...params, ...hparams], { retainGraph: true, allowUnused: true });
    const outerW = params.map((p, i) => outerGrads[i] ?? zeros(p.shape, { device: p.device }));
    const outerTheta = hparams.map((h, i) => outerGrads[params.length + i] ?? zeros(h.shape, { device: h.device }));
    const mapped = innerMap(params);
    let vs: Tensor[] = params.map((p) => zeros(p.shape, { device: p.device }));
    for (let step = 0; step < k; step++) {
      const jvp = grad(mapped, [...params], { gradOutputs: vs, retainGraph: true, allowUnused: true });
      vs = vs.map((v, i) => (jvp[i] ?? zeros(v.shape, { device: v.device })).add(outerW[i]!));
    }
    const thetaGrads = grad(mapped, [...hparams], { gradOutputs: vs, retainGraph: false, allowUnused: true });
    return hparams.map((_, i) =>
      thetaGrads[i] === null ? outerTheta[i]!.detach() : thetaGrads[i]!.add(outerTheta[i]!).detach(),
    );
  });
}

export class ImplicitBackdoorUnlearning implements Defense {
  readonly name = 'i-bau';

  constructor(readonly settings: IbauSettings = IBAU_DEFAULTS) {}

  run(model: Classifier, clean: ImageSplit, context: DefenseContext): DefenseOutcome {
    const s = this.settings;
    const started = performance.now();
    const batchSize = Math.min(s.batchSize, clean.count);
    // Batches hold what δ is added to: pixels in [0, 1] (normalized after adding δ) or the
    // normalized images themselves.
    const pixelSpace = s.space === 'pixel';
    const forward = (images: Tensor): Tensor =>
      model.forward(pixelSpace ? normalize(images, clean.normalization) : images);
    // The batches, shuffled once (the reference's loader is built once and listed).
    const order = permutation(clean.count, context.seed);
    const batches: { images: Tensor; labels: Tensor }[] = [];
    for (let start = 0; start < clean.count; start += batchSize) {
      const index = order.subarray(start, Math.min(start + batchSize, clean.count));
      batches.push(
        tidy(() => {
          const positions = tensor(index, { dtype: 'int64' });
          return {
            images: keep(
              pixelSpace
                ? toUnitRange(clean.images.indexSelect(0, positions))
                : normalize(toUnitRange(clean.images.indexSelect(0, positions)), clean.normalization),
            ),
            labels: keep(clean.labels.indexSelect(0, positions)),
          };
        }),
      );
    }
    const parameters = model.parameters().filter((p) => p.requiresGrad);
    const optimizer = new Adam(parameters, { lr: s.lr, betas: [0.9, 0.999], weightDecay: 0 });
    const epochs: DefenseEpoch[] = [];
    const wasTraining = model.training;
    let draws = 0;
    try {
      // As the reference: the model stays in eval mode throughout (batch norm on its running statistics).
      model.eval();
      for (let round = 0; round < s.rounds; round++) {
        const delta = keep(
          zeros([1, clean.channels, clean.height, clean.width], { device: context.device }).requiresGrad_(true),
        );
        const deltaOptimizer = new SGD([delta], { lr: s.perturbationLr });
        try {
          for (const batch of batches) {
            tidy(() => {
              const own = noGrad(() => forward(batch.images).argmax(1));
              const raised = F.crossEntropy(forward(batch.images.add(delta)), own)
                .neg()
                .add(delta.square().sum().mul(s.regularization));
              // The perturbation's gradient alone, not the weights' (unused here).
              const [gradient] = grad(raised, [delta]);
              delta.grad = gradient!;
              deltaOptimizer.step();
            });
          }
          const perturbation = noGrad(() => tidy(() => delta.detach().clone()));
          let lossSum = 0;
          try {
            for (const batch of batches) {
              const first = batches[0]!;
              // The outer loss's perturbed images: `portion` of the batch, at least one, chosen at random.
              const count = batch.labels.size(0);
              const patched = Math.max(1, Math.floor(count * s.portion));
              const values = new Float32Array(count);
              for (const i of permutation(count, context.seed * 100003 + draws++).subarray(0, patched)) values[i] = 1;
              const mask = tensor(values, { shape: [count, 1, 1, 1], device: batch.images.device });
              try {
                const params = [noGrad(() => perturbation.clone()).requiresGrad_(true)];
                const outerValue: number[] = [];
                const hypergradient = fixedPointHypergradient(
                  params,
                  parameters,
                  s.k,
                  ([w]) => {
                    // Φ(w, θ) = w − innerLr · ∂/∂w [−CE(f(x₀ + w), y₀) + reg·‖w‖²], on the first batch.
                    const inner = F.crossEntropy(forward(first.images.add(w!)), first.labels)
                      .neg()
                      .add(w!.square().sum().mul(s.regularization));
                    const [g] = grad(inner, [w!], { createGraph: true });
                    return [w!.sub(g!.mul(s.innerLr))];
                  },
                  ([w]) => {
                    const loss = F.crossEntropy(forward(batch.images.add(mask.mul(w!))), batch.labels);
                    outerValue.push(loss.item());
                    return loss;
                  },
                );
                optimizer.zeroGrad();
                parameters.forEach((p, i) => {
                  p.grad = hypergradient[i]!;
                });
                optimizer.step();
                for (const t of [...hypergradient, ...params]) t.dispose();
                lossSum += outerValue[0]! * count;
                if (!Number.isFinite(outerValue[0]!))
                  throw new Error(`i-BAU: the loss is not finite in round ${round}`);
              } finally {
                mask.dispose();
              }
            }
          } finally {
            perturbation.dispose();
          }
          endEpoch(epochs, model, context, {
            stage: 'unlearning',
            label: 'i-BAU round',
            index: round,
            total: s.rounds,
            lr: s.lr,
            loss: lossSum / clean.count,
            mode: 'eval',
          });
        } finally {
          deltaOptimizer.dispose();
          delta.dispose();
        }
      }
    } finally {
      optimizer.dispose();
      for (const batch of batches) {
        batch.images.dispose();
        batch.labels.dispose();
      }
      model.zeroGrad();
      model.train(wasTraining);
    }
    model.eval();
    const seconds = (performance.now() - started) / 1000;
    return untargetedOutcome(model, { epochs, seconds: { unlearning: seconds }, details: { settings: { ...s } } });
  }
}

export const ibauEntry: DefenseEntry = {
  name: 'i-bau',
  summary: 'i-BAU: unlearn a universal adversarial perturbation with the implicit hypergradient',
  options: IBAU_OPTIONS,
  create: (values) => new ImplicitBackdoorUnlearning(ibauSettings(values)),
};
