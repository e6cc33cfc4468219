// A scan for full-image periodic triggers such as SIG's sinusoid (not in the published code).
// Such a trigger has no small patch for the size scan to find, and fitting a stripe by
// gradient descent does not find it either: from zero, the optimizer follows the model's
// ordinary adversarial directions and never reaches the backdoor's frequency (measured on the
// SIG model of `bench:attacks`: an Adam-fitted column stripe of 20/255 sent 4 % of the scan
// images to the target, SIG's own sinusoid 88 %). So the scan tries a fixed family instead:
// sinusoidal stripes along the columns or the rows, s = A·sin(2π·f·j/W + k·π/2), frequencies
// 1 … W/4 (periods of 4 pixels or more), 4 phases, the same for every channel and every other
// row (column), A = 20/255 by default. For each class it keeps the stripe with the lowest mean
// cross-entropy to that class. Frequencies above W/4 are left out because there a stripe of
// 20/255 is an adversarial texture a clean class can take: on the clean WRN-16-1 of
// `bench:attacks` the Nyquist stripe sent 92 % of the images to class 4. It costs forward passes
// only: 2 axes × W/4 frequencies × 4 phases over the scan images (64 passes at 32×32).
// The signal inversion (method 'signal', `invertSignal`) returns the stripes that reach a
// class as a trigger to purify with.
import { type Precision, atPrecision, noGrad } from '../../engine/autograd.js';
import { tensor } from '../../engine/creation.js';
import * as F from '../../engine/functional.js';
import { keep, tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import type { ImageSplit } from '../../data/dataset.js';
import { normalize } from '../../data/normalization.js';
import { subset } from '../../data/subset.js';
import type { Module } from '../../nn/module.js';
import { checkTarget, freezeForInversion, passBatches } from './passes.js';
import { type InversionPass, type InvertedTrigger, SignalTrigger, stampStacked } from './trigger.js';

/** The stripes' amplitude, in 255ths (20, SIG's Δ). */
export const DEFAULT_SIGNAL_AMPLITUDE = 20;

/** One stripe of the family: value A·sin(2π·frequency·i/n + phase·π/2) along `axis`. */
export interface PeriodicSignal {
  /** 'columns': the value changes from column to column (vertical stripes); 'rows': from row to row. */
  axis: 'columns' | 'rows';
  /** Periods across the image. */
  frequency: number;
  /** Quarter turns, 0–3. */
  phase: number;
  /** In 255ths. */
  amplitude: number;
}

export interface SignalScanOptions {
  /** Amplitude in 255ths (20). */
  amplitude?: number;
  /** Highest frequency tried (a quarter of the side: 8 at 32×32). */
  maxFrequency?: number;
  batchSize?: number;
  precision?: Precision;
}

/** The best stripe for one class. */
export interface ClassSignal {
  signal: PeriodicSignal;
  /** Mean cross-entropy to the class with the stripe added. */
  loss: number;
  /** Fraction of the images the stripe sends to the class, in [0, 1]. */
  attackAccuracy: number;
}

/** The stripe as an additive pattern, C×H×W, in [−1, 1]. */
export function signalPattern(signal: PeriodicSignal, channels: number, height: number, width: number): Tensor {
  const length = signal.axis === 'columns' ? width : height;
  const values = Float32Array.from(
    { length },
    (_, i) =>
      (signal.amplitude / 255) * Math.sin((2 * Math.PI * signal.frequency * i) / length + (signal.phase * Math.PI) / 2),
  );
  return tidy(() => {
    const line = tensor(values, { shape: signal.axis === 'columns' ? [1, 1, width] : [1, height, 1] });
    return line.expand([channels, height, width]).contiguous();
  });
}

/** Every stripe of the family for an image of this size. */
export function signalFamily(height: number, width: number, options: SignalScanOptions = {}): PeriodicSignal[] {
  const amplitude = options.amplitude ?? DEFAULT_SIGNAL_AMPLITUDE;
  const family: PeriodicSignal[] = [];
  for (const axis of ['columns', 'rows'] as const) {
    const side = axis === 'columns' ? width : height;
    const highest = Math.min(options.maxFrequency ?? Math.floor(side / 4), Math.floor(side / 2));
    for (let frequency = 1; frequency <= highest; frequency++) {
      for (let phase = 0; phase < 4; phase++) family.push({ axis, frequency, phase, amplitude });
    }
  }
  return family;
}

/** Mean cross-entropy to every class and the fraction predicted as each, of the stamped images. */
export function classResponses(
  model: Module,
  images: ImageSplit,
  stamp: (batch: Tensor) => Tensor,
  batchSize: number,
  precision: Precision,
): { losses: Float64Array; reach: Float64Array } {
  const losses = new Float64Array(images.numClasses);
  const reach = new Float64Array(images.numClasses);
  let seen = 0;
  noGrad(() => {
    for (const batch of passBatches(images, batchSize, 0, 0)) {
      try {
        tidy(() => {
          const logits = atPrecision(precision, normalize(stamp(batch), images.normalization), (x) =>
            model.forward(x),
          ).to('float32');
          const logProbabilities = logits.logSoftmax(1).sum(0).toArray() as number[];
          const predictions = logits.argmax(1).toArray() as number[];
          logProbabilities.forEach((value, label) => (losses[label]! -= value));
          for (const label of predictions) reach[label]! += 1;
        });
        seen += batch.size(0);
      } finally {
        batch.dispose();
      }
    }
  });
  for (let label = 0; label < images.numClasses; label++) {
    losses[label]! /= seen;
    reach[label]! /= seen;
  }
  return { losses, reach };
}

/** Every stripe of the family with its per-class losses and reach (see classResponses). */
export function signalResponses(
  model: Module,
  images: ImageSplit,
  options: SignalScanOptions = {},
): { signal: PeriodicSignal; losses: Float64Array; reach: Float64Array }[] {
  const { channels, height, width } = images;
  const batchSize = options.batchSize ?? 250;
  const precision = options.precision ?? 'float32';
  const unfreeze = freezeForInversion(model);
  try {
    return signalFamily(height, width, options).map((signal) => {
      const pattern = keep(signalPattern(signal, channels, height, width));
      try {
        const { losses, reach } = classResponses(
          model,
          images,
          (batch) => batch.add(pattern).clamp(0, 1),
          batchSize,
          precision,
        );
        losses.forEach((loss, label) => {
          if (!Number.isFinite(loss)) throw new Error(`signal scan: loss ${loss} for class ${label}`);
        });
        return { signal, losses, reach };
      } finally {
        pattern.dispose();
      }
    });
  } finally {
    unfreeze();
  }
}

/** For each class, the stripe of the family that reaches it most easily (see the file's header). */
export function scanSignals(model: Module, images: ImageSplit, options: SignalScanOptions = {}): ClassSignal[] {
  const responses = signalResponses(model, images, options);
  return Array.from({ length: images.numClasses }, (_, label) => {
    let best = responses[0]!;
    for (const response of responses) if (response.losses[label]! < best.losses[label]!) best = response;
    return { signal: best.signal, loss: best.losses[label]!, attackAccuracy: best.reach[label]! };
  });
}

/** The signal inversion's settings (InversionOptions with method 'signal'). */
export interface SignalInversionOptions {
  /** Images per forward pass when measuring the stripes on all the clean images (250). */
  batchSize?: number;
  /** Seed of the (at most 500) scan images' stratified draw. */
  seed?: number;
  precision?: Precision;
  /** Reach a stripe needs to be kept, and the trigger to count as found (0.9). */
  attackThreshold?: number;
  /** The stripes' amplitude, in 255ths (20). */
  signalAmplitude?: number;
  /** Called once, with the stacked stripes' record. */
  onPass?: (record: InversionPass) => void;
}

/**
 * The 'signal' inversion: the stripes of the periodic-signal family that send at least
 * `attackThreshold` of at most 500 of the clean images (stratified, seeded) to `target`, the
 * best first, or the best one alone where none does. A backdoor that answers to more than one
 * stripe (a neighbouring frequency, another phase) is purified against each of them: on the
 * synthetic SIG model of test/defenses twelve stripes reached the target; purified against the
 * best alone (published loss) its ASR fell from 93 % to 52 %, against all of them to 0 %. The
 * attack accuracy is measured on all the clean images; the size is the amplitude, in 255ths.
 */
export function invertSignal(
  model: Module,
  clean: ImageSplit,
  target: number,
  options: SignalInversionOptions = {},
): InvertedTrigger {
  checkTarget(clean, target);
  const precision = options.precision ?? 'float32';
  const threshold = options.attackThreshold ?? 0.9;
  const scanSet = clean.count > 500 ? subset(clean, 500 / clean.count, { seed: options.seed ?? 0 }) : clean;
  let chosen: PeriodicSignal[];
  try {
    const ranked = signalResponses(model, scanSet, {
      ...(options.signalAmplitude === undefined ? {} : { amplitude: options.signalAmplitude }),
      precision,
    }).sort((a, b) => a.losses[target]! - b.losses[target]!);
    const reaching = ranked.filter((response) => response.reach[target]! >= threshold);
    chosen = (reaching.length > 0 ? reaching : ranked.slice(0, 1)).map((response) => response.signal);
  } finally {
    if (scanSet !== clean) scanSet.dispose();
  }
  const { channels, height, width } = clean;
  const stripes = keep(
    tidy(() =>
      F.stack(
        chosen.map((signal) => signalPattern(signal, channels, height, width)),
        0,
      ),
    ),
  );
  const unfreeze = freezeForInversion(model);
  try {
    // Attack accuracy and loss over all the clean images, each stamped as purification will.
    const { losses, reach } = classResponses(
      model,
      clean,
      (images) => stampStacked(images, stripes),
      options.batchSize ?? 250,
      precision,
    );
    const attackAccuracy = reach[target]!;
    const record: InversionPass = {
      pass: 0,
      loss: losses[target]!,
      attackAccuracy,
      regularizer: 0,
      size: chosen[0]!.amplitude,
      cost: 0,
      improved: true,
    };
    options.onPass?.(record);
    return new SignalTrigger(target, chosen, stripes, attackAccuracy, [record], attackAccuracy >= threshold);
  } catch (error) {
    stripes.dispose();
    throw error;
  } finally {
    unfreeze();
  }
}
