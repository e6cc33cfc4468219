// Blended: x' = (1 − α)·x + α·P with a fixed pattern P (an image file, or seeded noise).
import { tensor } from '../engine/creation.js';
import { keep, tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import { seededRandom } from '../data/rng.js';
import { Attack, type AttackConfig, type ImageGeometry } from './attack.js';
import { loadTriggerImage } from './patterns.js';
import type { AttackEntry } from './registry.js';

export interface BlendedOptions {
  /** Blend weight (0.2 when poisoning training data, as in the literature). */
  alpha?: number;
  /** Trigger image file; default: uniform noise from the attack's seed. */
  patternFile?: string;
}

export class Blended extends Attack {
  readonly name = 'blended';
  readonly alpha: number;
  readonly pattern: Tensor;

  constructor(config: AttackConfig, geometry: ImageGeometry, options: BlendedOptions = {}) {
    super(config, geometry);
    this.alpha = options.alpha ?? 0.2;
    if (!(this.alpha > 0 && this.alpha <= 1))
      throw new RangeError(`blended: alpha must be in (0, 1], got ${this.alpha}`);
    if (options.patternFile !== undefined) {
      this.pattern = loadTriggerImage(options.patternFile, geometry);
    } else {
      const { channels, height, width } = geometry;
      const random = seededRandom(config.seed ^ 0x6a09e667);
      // Noise quantized to 8-bit levels, like a saved noise image.
      const noise = Float32Array.from({ length: channels * height * width }, () => Math.floor(random() * 256) / 255);
      this.pattern = keep(tensor(noise, { shape: [1, channels, height, width] }));
    }
  }

  apply(images: Tensor): Tensor {
    return tidy(() => images.mul(1 - this.alpha).add(this.pattern.mul(this.alpha)));
  }

  override dispose(): void {
    this.pattern.dispose();
  }
}

export const blendedEntry: AttackEntry = {
  name: 'blended',
  summary: 'blends a pattern into the whole image: (1 − α)·x + α·P (noise or an image file)',
  policies: ['all-to-one', 'all-to-all'],
  create: ({ config, geometry, options }) => new Blended(config, geometry, options),
};
