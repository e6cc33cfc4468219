// patch: a user's own trigger image plus a mask image; where the mask is non-zero the
// trigger's pixels replace the image's.
import { keep, tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import { Attack, type AttackConfig, type ImageGeometry } from './attack.js';
import { loadTriggerImage, stamp } from './patterns.js';
import type { AttackEntry } from './registry.js';

export interface PatchOptions {
  triggerFile: string;
  maskFile: string;
}

export class Patch extends Attack {
  readonly name = 'patch';
  readonly pattern: Tensor;
  readonly mask: Tensor;

  constructor(config: AttackConfig, geometry: ImageGeometry, options: PatchOptions) {
    super(config, geometry);
    this.pattern = loadTriggerImage(options.triggerFile, geometry);
    const maskImage = loadTriggerImage(options.maskFile, { ...geometry, channels: 1 });
    this.mask = keep(tidy(() => maskImage.gt(0).to('float32')));
    maskImage.dispose();
  }

  apply(images: Tensor): Tensor {
    return stamp(images, this.mask, this.pattern);
  }

  override dispose(): void {
    this.pattern.dispose();
    this.mask.dispose();
  }
}

export const patchEntry: AttackEntry = {
  name: 'patch',
  summary: 'your own trigger image, pasted where a mask image is non-zero',
  policies: ['all-to-one', 'all-to-all'],
  create: ({ config, geometry, options }) => {
    if (options.triggerFile === undefined || options.maskFile === undefined) {
      throw new Error('patch: give --trigger FILE and --mask FILE');
    }
    return new Patch(config, geometry, { triggerFile: options.triggerFile, maskFile: options.maskFile });
  },
};
