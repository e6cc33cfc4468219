// A small seeded PRNG for data order and subsets, independent of libtorch's generator
// so that a dataset subset or an epoch order never depends on what else drew numbers.

/** mulberry32: fast, 32-bit state, good enough for shuffling. Returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates shuffle in place. */
export function shuffleInPlace<T extends { length: number; [i: number]: number }>(values: T, random: () => number): T {
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const swap = values[i]!;
    values[i] = values[j]!;
    values[j] = swap;
  }
  return values;
}

/**
 * The randomness of one epoch: a permutation of 0..n-1 and a float stream (for
 * augmentation), both derived from (seed, epoch) alone so a resumed run repeats them.
 */
export function epochStream(count: number, seed: number, epoch: number): { order: Int32Array; random: () => number } {
  const stream = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + epoch * 0x27d4eb2f) >>> 0;
  return { order: permutation(count, stream), random: seededRandom(stream ^ 0x5bd1e995) };
}

/** A seeded permutation of 0..n-1. */
export function permutation(n: number, seed: number): Int32Array {
  return shuffleInPlace(
    Int32Array.from({ length: n }, (_, i) => i),
    seededRandom(seed),
  );
}
