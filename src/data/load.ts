// loadDataset("kind:path", split): the decoded split, from the cache when it is current.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { ImageSplit, type ImageSplitInit, type Normalization } from './dataset.js';
import { cachePath, defaultCacheDir, readCache, sourceSignature, writeCache } from './cache.js';
import { type Split, cifarBinaryFiles, readCifar } from './sources/cifar.js';
import { DataError, listClassFolders } from './sources/files.js';
import { gtsrbFiles, readGtsrb } from './sources/gtsrb.js';
import { imageFolderRoot, readImageFolder } from './sources/imagefolder.js';
import { idxFiles, readMnist } from './sources/mnist.js';

export { DataError } from './sources/files.js';
export type { Split } from './sources/cifar.js';

export const DATASET_KINDS = ['cifar10', 'cifar100', 'gtsrb', 'imagefolder', 'mnist', 'fashion-mnist'] as const;
export type DatasetKind = (typeof DATASET_KINDS)[number];

/** Where Debian's dataset-fashion-mnist package puts the files (the demo's default data). */
export const DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

export interface LoadOptions {
  /** Folder for decoded-split caches; null disables caching. Default: $MCLDEF_CACHE_DIR or ~/.cache/mcldef/datasets. */
  cacheDir?: string | null;
  /** imagefolder only: channels and a size to resize every image to. */
  channels?: 1 | 3;
  size?: readonly [number, number];
  /** Overrides the dataset's default normalization. */
  normalization?: Normalization;
}

export function parseDataSpec(spec: string): { kind: DatasetKind; path: string } {
  const colon = spec.indexOf(':');
  const kind = (colon < 0 ? spec : spec.slice(0, colon)) as DatasetKind;
  let path = colon < 0 ? '' : spec.slice(colon + 1);
  if (!DATASET_KINDS.includes(kind)) {
    throw new DataError(
      `unknown dataset kind '${kind}' in '${spec}'; expected KIND:PATH with KIND one of ${DATASET_KINDS.join(', ')}`,
    );
  }
  if (path === '' && kind === 'fashion-mnist') path = DEBIAN_FASHION_MNIST;
  if (path === '') throw new DataError(`'${spec}' names no path; expected ${kind}:PATH`);
  if (!existsSync(path)) throw new DataError(`dataset folder not found: ${path}`);
  return { kind, path: resolve(path) };
}

/** The files a split is decoded from (for the cache signature). */
function sourceFiles(kind: DatasetKind, root: string, split: Split): string[] {
  switch (kind) {
    case 'cifar10':
    case 'cifar100':
      return cifarBinaryFiles(root, split, kind === 'cifar10' ? 10 : 100) ?? listClassFolders(join(root, split)).files;
    case 'mnist':
    case 'fashion-mnist':
      return idxFiles(root, split);
    case 'gtsrb':
      return gtsrbFiles(root, split);
    case 'imagefolder':
      return listClassFolders(imageFolderRoot(root, split)).files;
  }
}

function decode(kind: DatasetKind, root: string, split: Split, options: LoadOptions): ImageSplitInit {
  switch (kind) {
    case 'cifar10':
      return readCifar(root, split, 10);
    case 'cifar100':
      return readCifar(root, split, 100);
    case 'mnist':
    case 'fashion-mnist':
      return readMnist(root, split, kind);
    case 'gtsrb':
      return readGtsrb(root, split);
    case 'imagefolder':
      return readImageFolder(root, split, options);
  }
}

/** Loads one split of a dataset given as "kind:path" (see DATASET_KINDS). */
export function loadDataset(spec: string, split: Split, options: LoadOptions = {}): ImageSplit {
  const { kind, path } = parseDataSpec(spec);
  const cacheDir = options.cacheDir === undefined ? defaultCacheDir() : options.cacheDir;
  let init: ImageSplitInit | null = null;
  let file: string | null = null;
  let signature = '';
  if (cacheDir !== null) {
    signature = sourceSignature(sourceFiles(kind, path, split));
    const identity = JSON.stringify({ kind, path, split, channels: options.channels, size: options.size });
    file = cachePath(cacheDir, identity, `${kind}-${split}`);
    init = readCache(file, signature);
  }
  if (init === null) {
    init = decode(kind, path, split, options);
    if (file !== null) writeCache(file, signature, init);
  }
  if (options.normalization !== undefined) init = { ...init, normalization: options.normalization };
  return new ImageSplit(init);
}
