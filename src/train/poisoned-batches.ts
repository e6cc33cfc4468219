// Training batches from a split, optionally poisoned by an attack: the poisoned and cross
// samples are chosen once (seeded), triggers go on the [0, 1] images before augmentation
// (as a poisoned dataset would hold them), then augmentation and normalization.
import { tensor } from '../engine/creation.js';
import { tidy } from '../engine/scope.js';
import { callOp, type Tensor } from '../engine/tensor.js';
import type { Attack } from '../attacks/attack.js';
import { type AugmentOptions, augmentBatch } from '../data/augment.js';
import type { ImageSplit } from '../data/dataset.js';
import { normalize, toUnitRange } from '../data/normalization.js';
import { epochStream } from '../data/rng.js';

export interface PoisonPlan {
  /** Training labels after poisoning. */
  labels: Int32Array;
  poisoned: Int32Array;
  cross: Int32Array;
}

export function planPoisoning(split: ImageSplit, attack: Attack | undefined): PoisonPlan {
  const labels = Int32Array.from(split.labelArray);
  if (attack === undefined) return { labels, poisoned: new Int32Array(0), cross: new Int32Array(0) };
  const poisoned = attack.poisonIndices(split.labelArray, split.numClasses);
  for (const index of poisoned) labels[index] = attack.poisonedLabel(split.labelArray[index]!, split.numClasses);
  const cross = attack.crossIndices(split.labelArray, poisoned);
  return { labels, poisoned, cross };
}

/** One training batch; the trainer disposes `images` and `labels`. */
export interface PoisonedBatch {
  /** Augmented, normalized images, poisoned and cross samples transformed. */
  images: Tensor;
  /** Labels after poisoning (int64). */
  labels: Tensor;
  size: number;
  /** The samples' indices in the split. */
  indices: Int32Array;
  /** Batch positions of the poisoned samples. */
  poisoned: Int32Array;
  /** Batch positions of the cross samples. */
  cross: Int32Array;
}

export interface BatchSourceOptions {
  batchSize: number;
  seed: number;
  augment?: AugmentOptions;
}

export class PoisonedBatches {
  readonly plan: PoisonPlan;
  readonly #kind: Uint8Array; // 0 clean, 1 poisoned, 2 cross

  constructor(
    readonly split: ImageSplit,
    readonly attack: Attack | undefined,
    readonly options: BatchSourceOptions,
  ) {
    this.plan = planPoisoning(split, attack);
    this.#kind = new Uint8Array(split.count);
    for (const index of this.plan.poisoned) this.#kind[index] = 1;
    for (const index of this.plan.cross) this.#kind[index] = 2;
  }

  /** Batches per epoch (the last one may be smaller). */
  get length(): number {
    return Math.ceil(this.split.count / this.options.batchSize);
  }

  /** Epoch `epoch`'s batches of normalized images and (poisoned) labels; dispose each. */
  *epoch(epoch: number): Generator<PoisonedBatch> {
    const { order, random } = epochStream(this.split.count, this.options.seed, epoch);
    for (let start = 0; start < order.length; start += this.options.batchSize) {
      const indices = order.subarray(start, Math.min(start + this.options.batchSize, order.length));
      yield { ...this.batch(indices, random), size: indices.length, indices };
    }
  }

  /** Batch positions of the poisoned and the cross samples among `indices`. */
  positions(indices: Int32Array): { poisoned: Int32Array; cross: Int32Array } {
    const of = (kind: number): Int32Array =>
      Int32Array.from([...indices.keys()].filter((k) => this.#kind[indices[k]!] === kind));
    return { poisoned: of(1), cross: of(2) };
  }

  batch(
    indices: Int32Array,
    random: () => number,
  ): { images: Tensor; labels: Tensor; poisoned: Int32Array; cross: Int32Array } {
    const { poisoned, cross } = this.positions(indices);
    return tidy(() => {
      let images = toUnitRange(this.split.images.indexSelect(0, tensor(indices, { dtype: 'int64' })));
      if (this.attack !== undefined) {
        for (const [kind, positions] of [
          [1, poisoned],
          [2, cross],
        ] as const) {
          if (positions.length === 0) continue;
          const where = tensor(positions, { dtype: 'int64' });
          const chosen = images.indexSelect(0, where);
          // A trigger's indices are the images' positions in their split.
          const changed =
            kind === 1
              ? this.attack.apply(
                  chosen,
                  tensor(
                    Int32Array.from(positions, (k) => indices[k]!),
                    { dtype: 'int64' },
                  ),
                )
              : this.attack.applyCross(chosen);
          images = callOp('index_copy', images.handle, 0, where.handle, changed.handle);
        }
      }
      if (this.options.augment !== undefined) images = augmentBatch(images, this.options.augment, random);
      const labels = tensor(
        Int32Array.from(indices, (index) => this.plan.labels[index]!),
        { dtype: 'int64' },
      );
      return { images: normalize(images, this.split.normalization), labels, poisoned, cross };
    });
  }
}
