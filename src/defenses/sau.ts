// SAU (Shared Adversarial Unlearning, Wei et al., NeurIPS 2023): adversarial examples that
// fool the model and a frozen copy of it the same way behave like poisoned samples. Each
// batch gets such shared perturbations by PGD (L∞ 0.2 in pixel space, from the corner of the
// ball), then the model descends cross-entropy on the clean images plus a loss that stops it
// from giving the frozen copy's wrong answer on the perturbed ones. BackdoorBench defense/sau.py
// (the first author's implementation) with config/defense/sau/config.yaml.
// Given a checkpoint file (DefenseContext.checkpoint), it saves its state after every round and
// resumes from it: the 100 rounds take hours on a CPU.
import { grad, noGrad } from '../engine/autograd.js';
import * as F from '../engine/functional.js';
import { Adam } from '../engine/optim/adam.js';
import { tensor } from '../engine/creation.js';
import { keep, tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import type { ImageSplit, Normalization } from '../data/dataset.js';
import { normalize, toUnitRange } from '../data/normalization.js';
import { permutation } from '../data/rng.js';
import type { Classifier } from '../nn/models/classifier.js';
import { RoundCheckpoint, defenseRunIdentity } from './checkpoint.js';
import {
  type Defense,
  type DefenseContext,
  type DefenseEntry,
  type DefenseEpoch,
  type DefenseOutcome,
  type ResumedFrom,
  untargetedOutcome,
  endEpoch,
} from './defense.js';
import { type OptionSpecs, type OptionValues, withDefaults } from './options.js';

export interface SauSettings {
  /** Passes over the clean data (n_rounds: 100). */
  rounds: number;
  batchSize: number;
  /** Adam learning rate (1e-4), betas (0.9, 0.999), no decay. */
  lr: number;
  /** L∞ bound of the perturbation in [0, 1] pixel units (trigger_norm: 0.2). */
  bound: number;
  /** PGD step (adv_lr: 0.2) and steps (adv_steps: 5). */
  pgdStep: number;
  pgdSteps: number;
  /** Weights of the adversarial and the shared terms of the PGD loss (beta_1 0.01, beta_2 1). */
  beta1: number;
  beta2: number;
  /** Weights of the clean, adversarial-training and shared-risk terms (lmd_1 1, lmd_2 0, lmd_3 1). */
  lambda1: number;
  lambda2: number;
  lambda3: number;
}

export const SAU_DEFAULTS: SauSettings = {
  rounds: 100,
  batchSize: 256,
  lr: 1e-4,
  bound: 0.2,
  pgdStep: 0.2,
  pgdSteps: 5,
  beta1: 0.01,
  beta2: 1,
  lambda1: 1,
  lambda2: 0,
  lambda3: 1,
};

const SAU_OPTIONS: OptionSpecs = {
  rounds: { type: 'integer', min: 1, default: SAU_DEFAULTS.rounds, help: 'passes over the clean data' },
  batchSize: { type: 'integer', min: 1, default: SAU_DEFAULTS.batchSize, help: 'images per batch' },
  lr: { type: 'number', min: 0, default: SAU_DEFAULTS.lr, help: 'Adam learning rate' },
  bound: { type: 'number', min: 0, default: SAU_DEFAULTS.bound, help: 'L∞ bound of the perturbation (pixel units)' },
  pgdStep: { type: 'number', min: 0, default: SAU_DEFAULTS.pgdStep, help: 'PGD step size' },
  pgdSteps: { type: 'integer', min: 1, default: SAU_DEFAULTS.pgdSteps, help: 'PGD steps' },
  beta1: { type: 'number', min: 0, default: SAU_DEFAULTS.beta1, help: "weight of the PGD's adversarial term" },
  beta2: { type: 'number', min: 0, default: SAU_DEFAULTS.beta2, help: "weight of the PGD's shared term" },
  lambda1: { type: 'number', min: 0, default: SAU_DEFAULTS.lambda1, help: 'weight of the clean cross-entropy' },
  lambda2: { type: 'number', min: 0, default: SAU_DEFAULTS.lambda2, help: 'weight of adversarial training' },
  lambda3: { type: 'number', min: 0, default: SAU_DEFAULTS.lambda3, help: 'weight of the shared adversarial risk' },
};

/** Jensen–Shannon divergence of two rows of logits' softmaxes, per row (probabilities clamped at 1e-8). */
export function jsDivergence(logits: Tensor, logitsRef: Tensor): Tensor {
  return tidy(() => {
    const p = F.softmax(logits, 1).clamp(1e-8);
    const q = F.softmax(logitsRef, 1).clamp(1e-8);
    const mix = p.add(q).mul(0.5);
    const self = p.mul(p.log()).add(q.mul(q.log())).mul(0.5);
    const cross = p.mul(mix.log()).add(q.mul(mix.log())).mul(0.5);
    return self.sub(cross).sum(1);
  });
}

/**
 * The shared adversarial risk: on the rows where `mask` is 1 (the frozen copy was fooled),
 * −½[log(1e-6 + (1 − p_k).clamp(≤ 0.999)) + log(1 + 1e-6 − p_k.clamp(≥ 0.001))] with p_k the
 * model's probability of the copy's wrong label k, summed and divided by the batch size.
 */
export function sharedRisk(perLogits: Tensor, refLabels: Tensor, mask: Tensor): Tensor {
  return tidy(() => {
    const probabilities = F.softmax(perLogits, 1);
    const positive = probabilities.gather(1, refLabels.unsqueeze(1)).squeeze(1);
    const negative = probabilities.sum(1).sub(positive);
    const terms = negative
      .clamp(undefined, 0.999)
      .add(1e-6)
      .log()
      .add(
        positive
          .clamp(0.001)
          .neg()
          .add(1 + 1e-6)
          .log(),
      )
      .mul(-0.5);
    return terms.mul(mask).sum().div(perLogits.size(0));
  });
}

/** Shared-PGD: a per-image perturbation in pixel space that fools both models alike. */
export function sharedPerturbation(
  model: Classifier,
  reference: Classifier,
  pixels: Tensor,
  labels: Tensor,
  normalization: Normalization,
  s: Pick<SauSettings, 'bound' | 'pgdStep' | 'pgdSteps' | 'beta1' | 'beta2'>,
): Tensor {
  // From the ball's corner (pgd_init: max).
  let perturbation = keep(noGrad(() => pixels.mul(0).add(s.bound)));
  try {
    // Each model's own answer on the clean images: what a perturbation must change.
    const own = noGrad(() =>
      tidy(() => {
        const input = normalize(pixels, normalization);
        return [model.forward(input).argmax(1), reference.forward(input).argmax(1)];
      }),
    );
    try {
      for (let step = 0; step < s.pgdSteps; step++) {
        const next = tidy(() => {
          const delta = perturbation.detach().requiresGrad_(true);
          const input = normalize(pixels.add(delta), normalization);
          const logits = model.forward(input);
          const logitsRef = reference.forward(input);
          const label = logits.argmax(1);
          const labelRef = logitsRef.argmax(1);
          const fooled = label.ne(own[0]!);
          const fooledRef = labelRef.ne(own[1]!);
          const shared = fooled.logicalAnd(fooledRef).logicalAnd(label.eq(labelRef));
          const n = pixels.size(0);
          const adversarial = F.crossEntropy(logits, labels, { reduction: 'none' })
            .mul(fooled.logicalNot().float())
            .sum()
            .add(F.crossEntropy(logitsRef, labels, { reduction: 'none' }).mul(fooledRef.logicalNot().float()).sum())
            .div(2 * n)
            .neg();
          const crossTerm = jsDivergence(logits, logitsRef).mul(shared.logicalNot().float()).sum().div(n);
          const loss = adversarial.mul(s.beta1).add(crossTerm.mul(s.beta2));
          // The perturbation's gradient alone: no weight gradients for either model.
          const [gradient] = grad(loss, [delta]);
          const moved = delta.detach().sub(gradient!.sign().mul(s.pgdStep)).clamp(-s.bound, s.bound);
          const done = shared.logicalNot().sum().item() === 0;
          return { moved: keep(moved), done };
        });
        perturbation.dispose();
        perturbation = next.moved;
        if (next.done) break;
      }
    } finally {
      for (const t of own) t.dispose();
    }
    return perturbation;
  } catch (error) {
    perturbation.dispose();
    throw error;
  }
}

export class SharedAdversarialUnlearning implements Defense {
  readonly name = 'sau';

  constructor(readonly settings: SauSettings = SAU_DEFAULTS) {}

  run(model: Classifier, clean: ImageSplit, context: DefenseContext): DefenseOutcome {
    if (model.copy === undefined) {
      throw new Error('SAU needs a frozen copy of the model (copy); this architecture has none');
    }
    const s = this.settings;
    const started = performance.now();
    // Before any change to the model: the run's identity covers the weights it starts from.
    const checkpoint =
      context.checkpoint === undefined
        ? undefined
        : new RoundCheckpoint(context.checkpoint, defenseRunIdentity(this.name, s, context.seed, model, clean));
    const reference = model.copy();
    reference.eval();
    reference.requiresGrad_(false);
    const optimizer = new Adam(
      model.parameters().filter((p) => p.requiresGrad),
      { lr: s.lr, betas: [0.9, 0.999], weightDecay: 0 },
    );
    const epochs: DefenseEpoch[] = [];
    const wasTraining = model.training;
    const batchSize = Math.min(s.batchSize, clean.count);
    let resumed: ResumedFrom | undefined;
    try {
      const saved = checkpoint?.restore(model, optimizer);
      if (saved !== undefined) {
        resumed = { rounds: saved.rounds, seconds: saved.seconds };
        epochs.push(...saved.epochs);
        context.log(`SAU: resumed after round ${saved.rounds} of ${s.rounds} from ${checkpoint!.path}`);
      }
      // As the reference (train_mode off): both models in eval mode throughout.
      model.eval();
      for (let round = resumed?.rounds ?? 0; round < s.rounds; round++) {
        const order = permutation(clean.count, context.seed * 1000 + round);
        let lossSum = 0;
        for (let start = 0; start < clean.count; start += batchSize) {
          const positions = order.subarray(start, Math.min(start + batchSize, clean.count));
          lossSum += tidy(() => {
            const index = tensor(positions, { dtype: 'int64' });
            const pixels = toUnitRange(clean.images.indexSelect(0, index));
            const labels = clean.labels.indexSelect(0, index);
            const cleanInput = normalize(pixels, clean.normalization);
            const perturbation = sharedPerturbation(model, reference, pixels, labels, clean.normalization, s);
            const perturbed = normalize(pixels.add(perturbation), clean.normalization);
            perturbation.dispose();
            const n = labels.size(0);
            const both = model.forward(F.cat([cleanInput, perturbed], 0));
            const logits = both.narrow(0, 0, n);
            const perLogits = both.narrow(0, n, n);
            const [ownRef, perRef] = noGrad(() => [
              reference.forward(cleanInput).argmax(1),
              reference.forward(perturbed).argmax(1),
            ]);
            // The copy fooled: wrong and changed by the perturbation.
            const potential = perRef!.ne(labels).logicalAnd(perRef!.ne(ownRef!)).float();
            let loss = F.crossEntropy(logits, labels).mul(s.lambda1);
            if (s.lambda2 > 0) loss = loss.add(F.crossEntropy(perLogits, labels).mul(s.lambda2));
            loss = loss.add(sharedRisk(perLogits, perRef!, potential).mul(s.lambda3));
            optimizer.zeroGrad();
            loss.backward();
            optimizer.step();
            const value = loss.item();
            if (!Number.isFinite(value)) throw new Error(`SAU: the loss is ${value} in round ${round}`);
            return value * n;
          });
        }
        endEpoch(epochs, model, context, {
          stage: 'unlearning',
          label: 'SAU round',
          index: round,
          total: s.rounds,
          lr: s.lr,
          loss: lossSum / clean.count,
          mode: 'eval',
        });
        checkpoint?.save(model, optimizer, {
          rounds: round + 1,
          epochs,
          seconds: (resumed?.seconds ?? 0) + (performance.now() - started) / 1000,
        });
      }
    } finally {
      optimizer.dispose();
      reference.dispose();
      model.zeroGrad();
      model.train(wasTraining);
    }
    model.eval();
    const seconds = (resumed?.seconds ?? 0) + (performance.now() - started) / 1000;
    return untargetedOutcome(model, {
      epochs,
      seconds: { unlearning: seconds },
      details: { settings: { ...s } },
      ...(resumed === undefined ? {} : { resumed }),
    });
  }
}

function sauSettings(values: OptionValues): SauSettings {
  return withDefaults(SAU_OPTIONS, values) as unknown as SauSettings;
}

export const sauEntry: DefenseEntry = {
  name: 'sau',
  summary:
    'Shared Adversarial Unlearning (SAU): unlearn the adversarial examples the model shares with its frozen copy',
  options: SAU_OPTIONS,
  create: (values) => new SharedAdversarialUnlearning(sauSettings(values)),
};
