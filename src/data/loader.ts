// Batches of a split as tensors: seeded shuffling, optional augmentation, conversion to
// float in [0, 1] and optional normalization, all as batched tensor ops.
import { tensor } from '../engine/creation.js';
import { tidy } from '../engine/scope.js';
import type { Device, Tensor } from '../engine/tensor.js';
import { type AugmentOptions, augmentBatch } from './augment.js';
import type { ImageSplit } from './dataset.js';
import { normalize, toUnitRange } from './normalization.js';
import { epochStream, seededRandom } from './rng.js';

export interface LoaderOptions {
  batchSize: number;
  shuffle?: boolean;
  /** Seeds the order and the augmentation; epoch e uses a stream derived from (seed, e). */
  seed?: number;
  dropLast?: boolean;
  augment?: AugmentOptions;
  /** Apply the split's mean/std normalization (default false: images stay in [0, 1]). */
  normalize?: boolean;
  device?: Device;
}

export interface Batch {
  /** float32 N×C×H×W, in [0, 1] unless the loader normalizes. */
  images: Tensor;
  /** int64 N. */
  labels: Tensor;
  /** Positions of these images in the split. */
  indices: Int32Array;
}

export class DataLoader implements Iterable<Batch> {
  #epoch = 0;

  constructor(
    readonly split: ImageSplit,
    readonly options: LoaderOptions,
  ) {
    if (!(options.batchSize >= 1)) throw new RangeError(`DataLoader: batch size must be ≥ 1, got ${options.batchSize}`);
  }

  /** Batches per epoch. */
  get length(): number {
    const full = Math.floor(this.split.count / this.options.batchSize);
    return this.options.dropLast === true || this.split.count % this.options.batchSize === 0 ? full : full + 1;
  }

  /** The next epoch's batches (each call advances the epoch). The caller disposes each batch. */
  [Symbol.iterator](): Iterator<Batch> {
    return this.epoch(this.#epoch++);
  }

  /** The batches of epoch `epoch` (deterministic for a given seed). */
  *epoch(epoch: number): Generator<Batch> {
    const { batchSize, seed = 0 } = this.options;
    const stream = epochStream(this.split.count, seed, epoch);
    const order =
      this.options.shuffle === true ? stream.order : Int32Array.from({ length: this.split.count }, (_, i) => i);
    const random = stream.random;
    for (let start = 0; start < order.length; start += batchSize) {
      const indices = order.subarray(start, Math.min(start + batchSize, order.length));
      if (indices.length < batchSize && this.options.dropLast === true) break;
      yield this.batch(indices, random);
    }
  }

  /** One batch of the given images. */
  batch(indices: Int32Array, random: () => number = seededRandom(0)): Batch {
    return tidy(() => {
      const index = tensor(indices, { dtype: 'int64' });
      let pixels = this.split.images.indexSelect(0, index);
      if (this.options.augment !== undefined) pixels = augmentBatch(pixels, this.options.augment, random);
      if (this.options.device !== undefined && this.options.device !== 'cpu') pixels = pixels.to(this.options.device);
      let images = toUnitRange(pixels);
      if (this.options.normalize === true) images = normalize(images, this.split.normalization);
      let labels = this.split.labels.indexSelect(0, index);
      if (this.options.device !== undefined && this.options.device !== 'cpu') labels = labels.to(this.options.device);
      return { images, labels, indices: Int32Array.from(indices) };
    });
  }
}
