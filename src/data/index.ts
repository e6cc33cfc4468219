// Datasets: decoding (JPEG via libjpeg-turbo, PNG, PPM, IDX, CIFAR binaries), caching,
// subsets, batched loading with augmentation, and normalization.
export { ImageSplit, type ImageSplitInit, type Normalization } from './dataset.js';
export {
  DATASET_KINDS,
  DEBIAN_FASHION_MNIST,
  DataError,
  type DatasetKind,
  type LoadOptions,
  type Split,
  loadDataset,
  parseDataSpec,
} from './load.js';
export { DataLoader, type Batch, type LoaderOptions } from './loader.js';
export { type AugmentOptions, augmentBatch } from './augment.js';
export { subset, subsetIndices, type SubsetOptions } from './subset.js';
export * from './normalization.js';
export { defaultCacheDir } from './cache.js';
export { permutation, seededRandom } from './rng.js';
