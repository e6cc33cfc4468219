// Per-dataset normalization defaults (SPEC §7) and the batched normalize op.
import { tensor } from '../engine/creation.js';
import { tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import type { Normalization } from './dataset.js';

export const CIFAR_NORMALIZATION: Normalization = { mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.201] };
export const GTSRB_NORMALIZATION: Normalization = { mean: [0.3403, 0.3121, 0.3214], std: [0.2724, 0.2608, 0.2669] };
export const MNIST_NORMALIZATION: Normalization = { mean: [0.1307], std: [0.3081] };
export const FASHION_MNIST_NORMALIZATION: Normalization = { mean: [0.286], std: [0.353] };
/** Identity: images stay in [0, 1]. */
export const NO_NORMALIZATION: Normalization = { mean: [0, 0, 0], std: [1, 1, 1] };

/** (x − mean) / std per channel, for N×C×H×W float images in [0, 1]. */
export function normalize(images: Tensor, normalization: Normalization): Tensor {
  const channels = images.size(1);
  const { mean, std } = normalization;
  if (mean.length !== channels || std.length !== channels) {
    throw new Error(`normalize: ${channels} channels but mean/std of length ${mean.length}/${std.length}`);
  }
  return tidy(() => {
    const options = { shape: [1, channels, 1, 1], dtype: images.dtype, device: images.device } as const;
    return images.sub(tensor([...mean], options)).div(tensor([...std], options));
  });
}

/** uint8 pixels (0..255) to float32 in [0, 1]. */
export function toUnitRange(pixels: Tensor): Tensor {
  return tidy(() => pixels.to('float32').div(255));
}
