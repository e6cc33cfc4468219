// MNIST and Fashion-MNIST IDX files, gzipped or not.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import type { ImageSplitInit } from '../dataset.js';
import { FASHION_MNIST_NORMALIZATION, MNIST_NORMALIZATION } from '../normalization.js';
import { DataError, requireDirectory } from './files.js';
import type { Split } from './cifar.js';

const FASHION_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/** The images and labels files of a split (plain or .gz). */
export function idxFiles(root: string, split: Split): [string, string] {
  requireDirectory(root, 'MNIST folder');
  const prefix = split === 'train' ? 'train' : 't10k';
  const find = (name: string): string => {
    for (const candidate of [
      join(root, name),
      join(root, `${name}.gz`),
      join(root, name.replace(/-idx(\d)-/, '.idx$1-')),
    ]) {
      if (existsSync(candidate)) return candidate;
    }
    throw new DataError(`${root}: missing ${name}[.gz]`);
  };
  return [find(`${prefix}-images-idx3-ubyte`), find(`${prefix}-labels-idx1-ubyte`)];
}

function readIdx(path: string, expectedDims: number): { dims: number[]; data: Uint8Array } {
  let bytes: Uint8Array = readFileSync(path);
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4 || view.getUint16(0) !== 0 || bytes[2] !== 0x08 || bytes[3] !== expectedDims) {
    throw new DataError(`${path}: not an IDX file of unsigned bytes with ${expectedDims} dimensions`);
  }
  const dims = Array.from({ length: expectedDims }, (_, i) => view.getUint32(4 + 4 * i));
  const offset = 4 + 4 * expectedDims;
  const size = dims.reduce((a, b) => a * b, 1);
  if (bytes.length < offset + size)
    throw new DataError(`${path}: truncated (${bytes.length} bytes for ${dims.join('×')})`);
  return { dims, data: bytes.subarray(offset, offset + size) };
}

export function readMnist(root: string, split: Split, kind: 'mnist' | 'fashion-mnist'): ImageSplitInit {
  const [imagesFile, labelsFile] = idxFiles(root, split);
  const images = readIdx(imagesFile, 3);
  const labels = readIdx(labelsFile, 1);
  const [count, height, width] = images.dims as [number, number, number];
  if (labels.dims[0] !== count) throw new DataError(`${root}: ${count} images but ${labels.dims[0]} labels`);
  return {
    pixels: Uint8Array.from(images.data),
    labels: Int32Array.from(labels.data),
    channels: 1,
    height,
    width,
    classNames: kind === 'fashion-mnist' ? FASHION_CLASSES : Array.from({ length: 10 }, (_, i) => String(i)),
    normalization: kind === 'fashion-mnist' ? FASHION_MNIST_NORMALIZATION : MNIST_NORMALIZATION,
    source: `${kind}:${root} (${split})`,
  };
}
