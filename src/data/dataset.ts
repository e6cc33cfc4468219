// A decoded split of an image dataset: all images as one uint8 N×C×H×W tensor (pixels
// 0..255, as stored on disk) and int64 labels. Float conversion, triggers, augmentation
// and normalization happen per batch, as tensor ops.
import { tensor } from '../engine/creation.js';
import { keep, tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';

export interface Normalization {
  mean: readonly number[];
  std: readonly number[];
}

export interface ImageSplitInit {
  /** Raw pixels, N×C×H×W, row-major. */
  pixels: Uint8Array;
  labels: Int32Array;
  channels: number;
  height: number;
  width: number;
  classNames: readonly string[];
  normalization: Normalization;
  /** Where it came from, for messages (e.g. "cifar10:/data/cifar10 (train)"). */
  source: string;
}

export class ImageSplit {
  /** uint8 N×C×H×W. */
  readonly images: Tensor;
  /** int64 N. */
  readonly labels: Tensor;
  readonly labelArray: Int32Array;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly classNames: readonly string[];
  readonly normalization: Normalization;
  readonly source: string;

  constructor(init: ImageSplitInit) {
    const count = init.labels.length;
    const expected = count * init.channels * init.height * init.width;
    if (init.pixels.length !== expected) {
      throw new Error(
        `${init.source}: ${init.pixels.length} pixel bytes for ${count} images of ${init.channels}×${init.height}×${init.width}`,
      );
    }
    const numClasses = init.classNames.length;
    for (let i = 0; i < count; i++) {
      const label = init.labels[i]!;
      if (!(label >= 0 && label < numClasses)) {
        throw new Error(`${init.source}: image ${i} has label ${label}, outside 0..${numClasses - 1}`);
      }
    }
    this.images = keep(tensor(init.pixels, { shape: [count, init.channels, init.height, init.width] }));
    this.labels = keep(tensor(init.labels, { dtype: 'int64' }));
    this.labelArray = init.labels;
    this.channels = init.channels;
    this.height = init.height;
    this.width = init.width;
    this.classNames = init.classNames;
    this.normalization = init.normalization;
    this.source = init.source;
  }

  get count(): number {
    return this.labelArray.length;
  }

  get numClasses(): number {
    return this.classNames.length;
  }

  /** A new split holding the images at `indices` (copies). */
  select(indices: Int32Array | readonly number[], source = `${this.source} subset`): ImageSplit {
    const index = Int32Array.from(indices);
    for (const from of index) {
      if (!(from >= 0 && from < this.count)) throw new RangeError(`select: index ${from} outside 0..${this.count - 1}`);
    }
    // Gather in libtorch so that only the chosen images are copied out, not the whole split.
    const pixels = tidy(
      () => this.images.indexSelect(0, tensor(index, { dtype: 'int64' })).toTypedArray() as Uint8Array,
    );
    const labels = Int32Array.from(index, (from) => this.labelArray[from]!);
    return new ImageSplit({ ...this, pixels, labels, source });
  }

  /** Images per class, indexed by label. */
  classCounts(): number[] {
    const counts = new Array<number>(this.numClasses).fill(0);
    for (const label of this.labelArray) counts[label] = (counts[label] ?? 0) + 1;
    return counts;
  }

  dispose(): void {
    this.images.dispose();
    this.labels.dispose();
  }
}
