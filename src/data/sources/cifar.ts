// CIFAR-10 / CIFAR-100: the official binary files, or an image tree train/<class>/*, test/<class>/*.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { ImageSplitInit } from '../dataset.js';
import { CIFAR_NORMALIZATION } from '../normalization.js';
import { DataError, decodeImageFiles, listClassFolders, requireDirectory } from './files.js';

export type Split = 'train' | 'test';

const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/** The binary files of a split, or null when `root` is not a binary CIFAR folder. */
export function cifarBinaryFiles(root: string, split: Split, classes: 10 | 100): string[] | null {
  // The official archives unpack into cifar-10-batches-bin/ and cifar-100-binary/.
  const folders = [root, join(root, classes === 10 ? 'cifar-10-batches-bin' : 'cifar-100-binary')];
  for (const folder of folders) {
    const files =
      classes === 10
        ? split === 'train'
          ? [1, 2, 3, 4, 5].map((i) => join(folder, `data_batch_${i}.bin`))
          : [join(folder, 'test_batch.bin')]
        : [join(folder, `${split}.bin`)];
    if (files.every((file) => existsSync(file))) return files;
  }
  return null;
}

function classNamesFor(root: string, classes: 10 | 100): string[] {
  const metaFile = classes === 10 ? 'batches.meta.txt' : 'fine_label_names.txt';
  for (const folder of [root, join(root, classes === 10 ? 'cifar-10-batches-bin' : 'cifar-100-binary')]) {
    const path = join(folder, metaFile);
    if (existsSync(path)) {
      const names = readFileSync(path, 'utf8')
        .split('\n')
        .map((line) => line.trim())
        .filter((line) => line.length > 0);
      if (names.length === classes) return names;
    }
  }
  return classes === 10 ? CIFAR10_CLASSES : Array.from({ length: 100 }, (_, i) => `class_${i}`);
}

export function readCifar(root: string, split: Split, classes: 10 | 100): ImageSplitInit {
  const source = `cifar${classes}:${root} (${split})`;
  const binary = cifarBinaryFiles(root, split, classes);
  if (binary !== null) {
    // Record: label byte(s) then 3072 bytes of R, G, B planes (already C×H×W).
    const labelBytes = classes === 10 ? 1 : 2;
    const recordBytes = labelBytes + 3072;
    const chunks = binary.map((file) => {
      const bytes = readFileSync(file);
      if (bytes.length % recordBytes !== 0) {
        throw new DataError(
          `${file}: ${bytes.length} bytes is not a whole number of ${recordBytes}-byte CIFAR records`,
        );
      }
      return bytes;
    });
    const count = chunks.reduce((total, chunk) => total + chunk.length / recordBytes, 0);
    const pixels = new Uint8Array(count * 3072);
    const labels = new Int32Array(count);
    let index = 0;
    for (const chunk of chunks) {
      for (let offset = 0; offset < chunk.length; offset += recordBytes, index++) {
        labels[index] = chunk[offset + labelBytes - 1]!; // CIFAR-100: the fine label is the second byte
        pixels.set(chunk.subarray(offset + labelBytes, offset + recordBytes), index * 3072);
      }
    }
    return {
      pixels,
      labels,
      channels: 3,
      height: 32,
      width: 32,
      classNames: classNamesFor(root, classes),
      normalization: CIFAR_NORMALIZATION,
      source,
    };
  }
  const tree = join(root, split);
  if (!existsSync(tree)) {
    throw new DataError(`${root} holds neither CIFAR-${classes} binary files nor an image tree ${split}/<class>/*`);
  }
  requireDirectory(tree, `CIFAR-${classes} ${split} folder`);
  const { classNames, files, labels } = listClassFolders(tree);
  if (classNames.length !== classes) {
    throw new DataError(`${tree} has ${classNames.length} class folders; CIFAR-${classes} has ${classes}`);
  }
  const { pixels, height, width } = decodeImageFiles(files, { channels: 3 });
  if (height !== 32 || width !== 32) throw new DataError(`${tree}: CIFAR images are 32×32, found ${height}×${width}`);
  return { pixels, labels, channels: 3, height, width, classNames, normalization: CIFAR_NORMALIZATION, source };
}
