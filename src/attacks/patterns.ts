// Shared trigger building blocks: masked replacement and trigger images from files.
import { tensor } from '../engine/creation.js';
import { keep, tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import { decodeImageFiles } from '../data/sources/files.js';
import type { ImageGeometry } from './attack.js';

/** images · (1 − mask) + pattern · mask, with mask and pattern broadcast over the batch. */
export function stamp(images: Tensor, mask: Tensor, pattern: Tensor): Tensor {
  return tidy(() => images.mul(mask.rsub(1)).add(pattern.mul(mask)));
}

/** An image file as a 1×C×H×W float tensor in [0, 1], resized to the data's size (kept: dispose it). */
export function loadTriggerImage(path: string, geometry: ImageGeometry): Tensor {
  const channels = geometry.channels === 1 ? 1 : 3;
  const { pixels } = decodeImageFiles([path], { channels, resize: [geometry.height, geometry.width] });
  return keep(
    tidy(() =>
      tensor(pixels, { shape: [1, channels, geometry.height, geometry.width] })
        .to('float32')
        .div(255),
    ),
  );
}

/** A 1×1×H×W float mask from per-pixel values (row-major). */
export function maskFrom(values: Float32Array, geometry: ImageGeometry): Tensor {
  return keep(tensor(values, { shape: [1, 1, geometry.height, geometry.width] }));
}
