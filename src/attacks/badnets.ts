// BadNets: a fixed 3×3 patch in the bottom-right corner (SPEC §4).
import { tensor } from '../engine/creation.js';
import { keep } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import { Attack, type AttackConfig, type ImageGeometry } from './attack.js';
import { maskFrom, stamp } from './patterns.js';
import type { AttackEntry } from './registry.js';

/** A 3×3 patch whose top-left pixel is (top, left), values per (row, column) in 0..1, all channels. */
function cornerPatch(
  geometry: ImageGeometry,
  top: number,
  left: number,
  values: number[][],
): { mask: Tensor; pattern: Tensor } {
  const { channels, height, width } = geometry;
  if (top < 0 || left < 0) throw new Error(`images of ${height}×${width} are too small for a 3×3 corner trigger`);
  const mask = new Float32Array(height * width);
  const pattern = new Float32Array(channels * height * width);
  values.forEach((row, r) =>
    row.forEach((value, c) => {
      const pixel = (top + r) * width + left + c;
      mask[pixel] = 1;
      for (let channel = 0; channel < channels; channel++) pattern[channel * height * width + pixel] = value;
    }),
  );
  return {
    mask: maskFrom(mask, geometry),
    pattern: keep(tensor(pattern, { shape: [1, channels, height, width] })),
  };
}

abstract class PatchAttack extends Attack {
  protected abstract readonly mask: Tensor;
  protected abstract readonly pattern: Tensor;

  apply(images: Tensor): Tensor {
    return stamp(images, this.mask, this.pattern);
  }

  override dispose(): void {
    this.mask.dispose();
    this.pattern.dispose();
  }
}

/**
 * The MCLDef authors' "gridTrigger": rows H−3..H−1, columns W−3..W−1 (from the left)
 * = [[0, 0, 255], [0, 255, 0], [255, 0, 255]], i.e. row H−1 reads (255, 0, 255) at
 * columns (W−1, W−2, W−3), row H−2 (0, 255, 0), row H−3 (255, 0, 0).
 */
export class BadNetsGrid extends PatchAttack {
  readonly name = 'badnets-grid';
  protected readonly mask: Tensor;
  protected readonly pattern: Tensor;

  constructor(config: AttackConfig, geometry: ImageGeometry) {
    super(config, geometry);
    ({ mask: this.mask, pattern: this.pattern } = cornerPatch(geometry, geometry.height - 3, geometry.width - 3, [
      [0, 0, 1],
      [0, 1, 0],
      [1, 0, 1],
    ]));
  }
}

/** A white 3×3 square one pixel from the bottom-right corner (rows/columns 28..30 on 32×32). */
export class BadNetsSquare extends PatchAttack {
  readonly name = 'badnets-square';
  protected readonly mask: Tensor;
  protected readonly pattern: Tensor;

  constructor(config: AttackConfig, geometry: ImageGeometry) {
    super(config, geometry);
    ({ mask: this.mask, pattern: this.pattern } = cornerPatch(geometry, geometry.height - 4, geometry.width - 4, [
      [1, 1, 1],
      [1, 1, 1],
      [1, 1, 1],
    ]));
  }
}

export { PatchAttack };

export const badnetsGridEntry: AttackEntry = {
  name: 'badnets-grid',
  summary: "BadNets with the MCLDef authors' 3×3 grid in the bottom-right corner",
  policies: ['all-to-one', 'all-to-all'],
  create: ({ config, geometry }) => new BadNetsGrid(config, geometry),
};

export const badnetsSquareEntry: AttackEntry = {
  name: 'badnets-square',
  summary: 'BadNets with a white 3×3 square one pixel from the bottom-right corner',
  policies: ['all-to-one', 'all-to-all'],
  create: ({ config, geometry }) => new BadNetsSquare(config, geometry),
};
