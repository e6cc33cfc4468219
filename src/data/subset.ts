// The defender's clean data: a seeded subset of a split by ratio, stratified or random.
import type { ImageSplit } from './dataset.js';
import { permutation, seededRandom, shuffleInPlace } from './rng.js';

export interface SubsetOptions {
  seed?: number;
  /** Same ratio of every class (default), or a plain random sample. */
  stratified?: boolean;
}

/** Sorted indices of round(ratio · N) images (per class when stratified). */
export function subsetIndices(split: ImageSplit, ratio: number, options: SubsetOptions = {}): Int32Array {
  if (!(ratio > 0 && ratio <= 1)) throw new RangeError(`subset ratio must be in (0, 1], got ${ratio}`);
  const seed = options.seed ?? 0;
  let chosen: number[];
  if (options.stratified === false) {
    chosen = Array.from(permutation(split.count, seed).subarray(0, Math.round(ratio * split.count)));
  } else {
    const byClass: number[][] = Array.from({ length: split.numClasses }, () => []);
    split.labelArray.forEach((label, index) => byClass[label]!.push(index));
    const random = seededRandom(seed);
    chosen = byClass.flatMap((members) => {
      const shuffled = shuffleInPlace(Int32Array.from(members), random);
      return Array.from(shuffled.subarray(0, Math.round(ratio * members.length)));
    });
  }
  return Int32Array.from(chosen).sort();
}

/** A new split with a seeded `ratio` of the images. */
export function subset(split: ImageSplit, ratio: number, options: SubsetOptions = {}): ImageSplit {
  const stratified = options.stratified !== false;
  return split.select(
    subsetIndices(split, ratio, options),
    `${split.source}, ${stratified ? 'stratified' : 'random'} ${ratio} subset (seed ${options.seed ?? 0})`,
  );
}
