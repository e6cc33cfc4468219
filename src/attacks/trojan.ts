// Trojan-style patch: a square watermark in the bottom-right corner, either read from an
// image file or generated against a clean model by maximizing one penultimate neuron
// (the one most connected to the target class) inside the corner mask (TrojanNN's idea).
import { zeros } from '../engine/creation.js';
import { keep, tidy } from '../engine/scope.js';
import { noGrad } from '../engine/autograd.js';
import type { Tensor } from '../engine/tensor.js';
import { Adam } from '../engine/optim/adam.js';
import type { Normalization } from '../data/dataset.js';
import { normalize } from '../data/normalization.js';
import type { Classifier } from '../nn/models/classifier.js';
import { Attack, type AttackConfig, type ImageGeometry } from './attack.js';
import { loadTriggerImage, maskFrom, stamp } from './patterns.js';
import type { AttackEntry } from './registry.js';

export interface TrojanOptions {
  /** Side of the square watermark in pixels (default: a quarter of the image height). */
  size?: number;
  /** Watermark image file, resized to size×size. */
  watermarkFile?: string;
}

export interface TrojanGeneration {
  model: Classifier;
  /** Clean float images in [0, 1] to optimize over. */
  images: Tensor;
  normalization: Normalization;
  steps?: number;
}

export class Trojan extends Attack {
  readonly name = 'trojan';
  readonly mask: Tensor;
  readonly pattern: Tensor;

  constructor(config: AttackConfig, geometry: ImageGeometry, options: TrojanOptions & { pattern?: Tensor } = {}) {
    super(config, geometry);
    const { height, width } = geometry;
    const size = options.size ?? Math.max(3, Math.round(height / 4));
    const maskValues = new Float32Array(height * width);
    for (let r = height - size; r < height; r++)
      for (let c = width - size; c < width; c++) maskValues[r * width + c] = 1;
    this.mask = maskFrom(maskValues, geometry);
    if (options.pattern !== undefined) {
      this.pattern = keep(options.pattern);
    } else if (options.watermarkFile !== undefined) {
      // The watermark fills the corner square; elsewhere the pattern is unused.
      const small = loadTriggerImage(options.watermarkFile, { ...geometry, height: size, width: size });
      this.pattern = keep(
        tidy(() => {
          const full = zeros([1, geometry.channels, height, width]);
          full
            .narrow(2, height - size, size)
            .narrow(3, width - size, size)
            .copy_(small);
          return full;
        }),
      );
      small.dispose();
    } else {
      throw new Error('trojan: give a watermark image (--trojan-watermark FILE) or a clean model to generate one from');
    }
  }

  /** Optimizes the corner pattern to maximize the penultimate neuron most tied to the target. */
  static generate(
    config: AttackConfig,
    geometry: ImageGeometry,
    options: TrojanOptions,
    source: TrojanGeneration,
  ): Trojan {
    const placeholder = new Trojan(config, geometry, {
      ...options,
      pattern: zeros([1, geometry.channels, geometry.height, geometry.width]),
    });
    const { model, images, normalization } = source;
    const wasTraining = model.training;
    model.eval();
    const frozen = model.parameters().map((p) => [p, p.requiresGrad] as const);
    model.requiresGrad_(false);
    // The neuron whose increase raises the target logit most: d logit_t / d feature.
    const neuron = tidy(() => {
      const dimension = noGrad(() => model.features(normalize(images.narrow(0, 0, 1), normalization)).size(1));
      const probe = zeros([1, dimension], { requiresGrad: true });
      model.classify(probe).select(1, config.target).sum().backward();
      return probe.grad!.argmax().item();
    });
    const logits = keep(zeros([1, geometry.channels, geometry.height, geometry.width], { requiresGrad: true }));
    const optimizer = new Adam([logits], { lr: 0.1 });
    for (let step = 0; step < (source.steps ?? 200); step++) {
      tidy(() => {
        const stamped = stamp(images, placeholder.mask, logits.sigmoid());
        const activation = model.features(normalize(stamped, normalization)).select(1, neuron).mean();
        optimizer.zeroGrad();
        activation.neg().backward();
        optimizer.step();
      });
    }
    const pattern = noGrad(() => tidy(() => logits.sigmoid().mul(placeholder.mask)));
    for (const [parameter, requiresGrad] of frozen) parameter.requiresGrad_(requiresGrad);
    model.train(wasTraining);
    optimizer.dispose();
    logits.dispose();
    placeholder.dispose();
    return new Trojan(config, geometry, { ...options, pattern });
  }

  apply(images: Tensor): Tensor {
    return stamp(images, this.mask, this.pattern);
  }

  override dispose(): void {
    this.mask.dispose();
    this.pattern.dispose();
  }
}

export const trojanEntry: AttackEntry = {
  name: 'trojan',
  summary: 'a corner watermark from an image file, or generated against a clean model (TrojanNN)',
  policies: ['all-to-one', 'all-to-all'],
  create: ({ config, geometry, options }) =>
    options.watermarkFile === undefined && options.trojanSource !== undefined
      ? Trojan.generate(config, geometry, options, options.trojanSource)
      : new Trojan(config, geometry, options),
};
