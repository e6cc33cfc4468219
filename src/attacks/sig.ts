// SIG (clean-label): a horizontal sinusoid s(i, j) = Δ·sin(2π·j·f/W) (Δ = 20 of 255, f = 6)
// added to target-class training images, whose labels stay; at test time it is added to
// any image. x' = clip((1 − α)·x + α·(x + s)) = clip(x + α·s); α = 1 is the classic SIG.
import { tensor } from '../engine/creation.js';
import { keep, tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import { Attack, type AttackConfig, type ImageGeometry } from './attack.js';
import type { AttackEntry } from './registry.js';

export interface SigOptions {
  delta?: number;
  frequency?: number;
  alpha?: number;
}

export class Sig extends Attack {
  readonly name = 'sig';
  readonly signal: Tensor;

  constructor(config: AttackConfig, geometry: ImageGeometry, options: SigOptions = {}) {
    if (config.mode !== 'all-to-one') throw new Error('sig is a clean-label all-to-one attack');
    super(config, geometry, 'clean-label');
    const delta = options.delta ?? 20;
    const frequency = options.frequency ?? 6;
    const alpha = options.alpha ?? 1;
    const { width } = geometry;
    const row = Float32Array.from(
      { length: width },
      (_, j) => (alpha * delta * Math.sin((2 * Math.PI * j * frequency) / width)) / 255,
    );
    this.signal = keep(tensor(row, { shape: [1, 1, 1, width] }));
  }

  apply(images: Tensor): Tensor {
    return tidy(() => images.add(this.signal).clamp(0, 1));
  }

  override dispose(): void {
    this.signal.dispose();
  }
}

export const sigEntry: AttackEntry = {
  name: 'sig',
  summary: 'clean-label: a horizontal sinusoid added to target-class training images',
  policies: ['clean-label'],
  create: ({ config, geometry, options }) => new Sig(config, geometry, options),
};
