// The one trigger type: anything that stamps images. An attack's test-time trigger, an
// inverted trigger and a stack of them all implement it, so evaluation, purification and
// the report take any of them.
import type { Tensor } from '../engine/tensor.js';

export interface Trigger {
  /**
   * Stamps float images in [0, 1] (N×C×H×W) and returns new images in [0, 1]. `indices`
   * (int64, N) are the images' positions in their set; only a trigger that stamps images
   * differently uses them (a stack of patterns: image n gets pattern n mod K). Without them,
   * the position in the batch.
   */
  apply(images: Tensor, indices?: Tensor): Tensor;
}
