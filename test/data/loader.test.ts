// Loader, augmentation and subsets.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { data, liveTensorCount, tensor, tidy } from '../../src/index.js';

function makeSplit(count: number, numClasses = 4): data.ImageSplit {
  const pixels = new Uint8Array(count * 3 * 4 * 4);
  pixels.forEach((_, i) => (pixels[i] = (i * 7) % 256));
  return new data.ImageSplit({
    pixels,
    labels: Int32Array.from({ length: count }, (_, i) => i % numClasses),
    channels: 3,
    height: 4,
    width: 4,
    classNames: Array.from({ length: numClasses }, (_, i) => `c${i}`),
    normalization: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] },
    source: 'synthetic',
  });
}

test('batches: shapes, [0, 1] range, normalization, labels follow the images, drop-last', () => {
  const split = makeSplit(10);
  const loader = new data.DataLoader(split, { batchSize: 4, shuffle: true, seed: 3 });
  assert.equal(loader.length, 3);
  const seen: number[] = [];
  for (const batch of loader) {
    tidy(() => {
      assert.deepEqual(batch.images.shape.slice(1), [3, 4, 4]);
      assert.equal(batch.images.dtype, 'float32');
      assert.ok(batch.images.min().item() >= 0 && batch.images.max().item() <= 1);
      batch.indices.forEach((index, k) => {
        assert.equal(batch.labels.select(0, k).item(), index % 4);
        const expected = split.images.select(0, index).to('float32').div(255);
        assert.ok(batch.images.select(0, k).sub(expected).abs().max().item() < 1e-7);
      });
      seen.push(...batch.indices);
    });
    batch.images.dispose();
    batch.labels.dispose();
  }
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    [...Array(10).keys()],
    'every image once per epoch',
  );
  const normalized = new data.DataLoader(split, { batchSize: 10, normalize: true });
  const [batch] = [...normalized];
  tidy(() => {
    const raw = split.images.select(0, 0).to('float32').div(255);
    assert.ok(batch!.images.select(0, 0).sub(raw.sub(0.5).div(0.25)).abs().max().item() < 1e-6);
  });
  assert.equal(new data.DataLoader(split, { batchSize: 4, dropLast: true }).length, 2);
  split.dispose();
});

test('seeded shuffling repeats per (seed, epoch) and differs between epochs', () => {
  const split = makeSplit(50);
  const order = (seed: number, epoch: number): number[] =>
    [...new data.DataLoader(split, { batchSize: 50, shuffle: true, seed }).epoch(epoch)].flatMap((batch) => {
      batch.images.dispose();
      batch.labels.dispose();
      return [...batch.indices];
    });
  assert.deepEqual(order(1, 0), order(1, 0));
  assert.notDeepEqual(order(1, 0), order(1, 1));
  assert.notDeepEqual(order(1, 0), order(2, 0));
  split.dispose();
});

test('augmentation: crops are shifted windows of the zero-padded image; flips mirror', () => {
  tidy(() => {
    const image = tensor([...Array(16).keys()], { shape: [1, 1, 4, 4], dtype: 'uint8' });
    // random() = 0 → offset 0 (shift down-right by the padding), then no flip (0 < 0.5 → flip!).
    const values = [0, 0, 0.99];
    let call = 0;
    const cropped = data.augmentBatch(image, { cropPadding: 1, horizontalFlip: true }, () => values[call++ % 3]!);
    // Offset (0, 0) in the padded image: first row and column are padding zeros; flip=false (0.99).
    assert.deepEqual(cropped.toArray(), [
      [
        [
          [0, 0, 0, 0],
          [0, 0, 1, 2],
          [0, 4, 5, 6],
          [0, 8, 9, 10],
        ],
      ],
    ]);
    const mirrored = data.augmentBatch(image, { horizontalFlip: true }, () => 0.1);
    assert.deepEqual(mirrored.toArray(), image.flip(3).toArray());
    const centred = data.augmentBatch(image, { cropPadding: 2 }, () => 0.5);
    assert.deepEqual(centred.toArray(), image.toArray(), 'offset = padding is the identity');
  });
});

test('subsets: stratified keeps the ratio per class, seeds repeat, random differs', () => {
  const split = makeSplit(400);
  const a = data.subsetIndices(split, 0.05, { seed: 1 });
  assert.equal(a.length, 20);
  const counts = [0, 0, 0, 0];
  for (const index of a) counts[split.labelArray[index]!]!++;
  assert.deepEqual(counts, [5, 5, 5, 5]);
  assert.deepEqual(data.subsetIndices(split, 0.05, { seed: 1 }), a);
  assert.notDeepEqual(data.subsetIndices(split, 0.05, { seed: 2 }), a);
  assert.equal(data.subsetIndices(split, 0.05, { seed: 1, stratified: false }).length, 20);
  assert.throws(() => data.subsetIndices(split, 0), /ratio must be in \(0, 1\]/);
  const before = liveTensorCount();
  const small = data.subset(split, 0.05, { seed: 1 });
  assert.equal(small.count, 20);
  assert.deepEqual(
    [...small.labelArray],
    [...a].map((i) => split.labelArray[i]!),
  );
  small.dispose();
  assert.equal(liveTensorCount(), before);
  split.dispose();
});
