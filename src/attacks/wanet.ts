// WaNet: a smooth warp (k×k random control grid, strength s, upsampled bicubically to
// H×W) applied by grid sampling; in training, "noise mode" cross samples with randomly
// perturbed grids keep their labels so the network learns the exact warp only.
import { callOp } from '../engine/tensor.js';
import { linspace, rand, tensor } from '../engine/creation.js';
import * as F from '../engine/functional.js';
import { keep, tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import { permutation, seededRandom } from '../data/rng.js';
import { Attack, type AttackConfig, type ImageGeometry } from './attack.js';
import type { AttackEntry } from './registry.js';

export interface WanetOptions {
  /** Control grid size (4). */
  k?: number;
  /** Warp strength (0.5). */
  strength?: number;
  /** Cross (noise-mode) samples per poisoned sample (2). */
  crossRatio?: number;
}

export class Wanet extends Attack {
  readonly name = 'wanet';
  /** 1×H×W×2 sampling grid of the backdoor warp. */
  readonly grid: Tensor;
  readonly crossRatio: number;

  constructor(config: AttackConfig, geometry: ImageGeometry, options: WanetOptions = {}) {
    super(config, geometry);
    const k = options.k ?? 4;
    const strength = options.strength ?? 0.5;
    this.crossRatio = options.crossRatio ?? 2;
    const { height, width } = geometry;
    const random = seededRandom(config.seed ^ 0x3c6ef372);
    const control = Float32Array.from({ length: 2 * k * k }, () => random() * 2 - 1);
    const meanAbs = control.reduce((total, v) => total + Math.abs(v), 0) / control.length;
    this.grid = keep(
      tidy(() => {
        const ins = tensor(control, { shape: [1, 2, k, k] }).div(meanAbs);
        const noise = callOp('upsample_bicubic2d.vec', ins.handle, [height, width], true, null).permute([0, 2, 3, 1]);
        // Identity grid: x varies along the width, y along the height, in [-1, 1].
        const xs = linspace(-1, 1, width).reshape([1, 1, width]).expand([1, height, width]);
        const ys = linspace(-1, 1, height).reshape([1, height, 1]).expand([1, height, width]);
        const identity = F.stack([xs, ys], 3);
        return identity.add(noise.mul(strength / height)).clamp(-1, 1);
      }),
    );
  }

  apply(images: Tensor): Tensor {
    return tidy(() => F.gridSample(images, this.grid.expand([images.size(0), -1, -1, -1]), { alignCorners: true }));
  }

  /** Noise-mode samples: crossRatio × the poisoned count, drawn from the rest. */
  override crossIndices(labels: Int32Array, poisoned: Int32Array): Int32Array {
    const taken = new Set(poisoned);
    const wanted = Math.min(Math.round(this.crossRatio * poisoned.length), labels.length - poisoned.length);
    const chosen: number[] = [];
    for (const index of permutation(labels.length, this.config.seed ^ 0x1b873593)) {
      if (chosen.length >= wanted) break;
      if (!taken.has(index)) chosen.push(index);
    }
    return Int32Array.from(chosen).sort();
  }

  /** The backdoor grid plus per-sample uniform noise of ±1/H (fresh each call). */
  override applyCross(images: Tensor): Tensor {
    const [count, , height, width] = images.shape as [number, number, number, number];
    return tidy(() => {
      const jitter = rand([count, height, width, 2]).mul(2).sub(1).div(height);
      const grid = this.grid.expand([count, -1, -1, -1]).add(jitter).clamp(-1, 1);
      return F.gridSample(images, grid, { alignCorners: true });
    });
  }

  override dispose(): void {
    this.grid.dispose();
  }
}

export const wanetEntry: AttackEntry = {
  name: 'wanet',
  summary: 'a smooth warp by grid sampling, with noise-mode cross samples in training',
  policies: ['all-to-one', 'all-to-all'],
  create: ({ config, geometry, options }) => new Wanet(config, geometry, options),
};
