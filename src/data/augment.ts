// Batched augmentation: random crop with zero padding and horizontal flip as one
// advanced-indexing op over the whole batch (no per-pixel JS loop).
import { tensor } from '../engine/creation.js';
import * as F from '../engine/functional.js';
import { tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';

export interface AugmentOptions {
  /** Random crop back to H×W after zero-padding each side by this many pixels (CIFAR: 4). */
  cropPadding?: number;
  /** Mirror each image left-right with probability 1/2. */
  horizontalFlip?: boolean;
}

/** Augments an N×C×H×W batch (any dtype); `random` gives floats in [0, 1). */
export function augmentBatch(images: Tensor, options: AugmentOptions, random: () => number): Tensor {
  const padding = options.cropPadding ?? 0;
  const flip = options.horizontalFlip ?? false;
  if (padding === 0 && !flip) return images.clone();
  const [count, channels, height, width] = images.shape as [number, number, number, number];
  return tidy(() => {
    const source = padding > 0 ? F.pad(images, [padding, padding, padding, padding]) : images;
    const rows = new BigInt64Array(count * height);
    const columns = new BigInt64Array(count * width);
    for (let n = 0; n < count; n++) {
      const dy = padding > 0 ? Math.floor(random() * (2 * padding + 1)) : 0;
      const dx = padding > 0 ? Math.floor(random() * (2 * padding + 1)) : 0;
      const mirrored = flip && random() < 0.5;
      for (let i = 0; i < height; i++) rows[n * height + i] = BigInt(dy + i);
      for (let j = 0; j < width; j++) columns[n * width + j] = BigInt(dx + (mirrored ? width - 1 - j : j));
    }
    const batchIndex = tensor(
      BigInt64Array.from({ length: count }, (_, n) => BigInt(n)),
      { shape: [count, 1, 1, 1] },
    );
    const channelIndex = tensor(
      BigInt64Array.from({ length: channels }, (_, c) => BigInt(c)),
      { shape: [1, channels, 1, 1] },
    );
    return source.index([
      batchIndex,
      channelIndex,
      tensor(rows, { shape: [count, 1, height, 1] }),
      tensor(columns, { shape: [count, 1, 1, width] }),
    ]);
  });
}
