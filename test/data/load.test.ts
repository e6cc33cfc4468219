// Dataset readers (CIFAR binaries, IDX, image trees), the cache and its invalidation.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';

import { data, tidy } from '../../src/index.js';
import { temporaryFolder } from '../helpers/tmp.js';

function cifarRecord(label: number, fill: number, labelBytes = 1): Buffer {
  const record = Buffer.alloc(labelBytes + 3072, fill);
  record.fill(0, 0, labelBytes);
  record[labelBytes - 1] = label;
  record[labelBytes] = 7; // first red pixel
  return record;
}

test('CIFAR-10 binary batches: labels, C×H×W pixels, class names, normalization', () => {
  const root = temporaryFolder('mcldef-data-');
  for (let i = 1; i <= 5; i++)
    writeFileSync(join(root, `data_batch_${i}.bin`), Buffer.concat([cifarRecord(i, 10 * i), cifarRecord(9, 1)]));
  writeFileSync(join(root, 'test_batch.bin'), cifarRecord(3, 200));
  const train = data.loadDataset(`cifar10:${root}`, 'train', { cacheDir: null });
  assert.equal(train.count, 10);
  assert.deepEqual([...train.labelArray], [1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
  assert.equal(train.classNames[5], 'dog');
  assert.deepEqual(train.normalization.mean, [0.4914, 0.4822, 0.4465]);
  tidy(() => {
    const first = train.images.select(0, 0);
    assert.deepEqual(first.shape, [3, 32, 32]);
    assert.equal(first.select(0, 0).select(0, 0).select(0, 0).item(), 7);
    assert.equal(first.select(0, 0).select(0, 0).select(0, 1).item(), 10);
  });
  const test = data.loadDataset(`cifar10:${root}`, 'test', { cacheDir: null });
  assert.deepEqual([...test.labelArray], [3]);
  writeFileSync(join(root, 'test_batch.bin'), Buffer.alloc(100));
  assert.throws(
    () => data.loadDataset(`cifar10:${root}`, 'test', { cacheDir: null }),
    /not a whole number of 3073-byte CIFAR records/,
  );
  train.dispose();
  test.dispose();
});

test('CIFAR-100 binary: the fine label is the second byte', () => {
  const root = temporaryFolder('mcldef-data-');
  writeFileSync(join(root, 'train.bin'), Buffer.concat([cifarRecord(77, 5, 2), cifarRecord(12, 5, 2)]));
  const split = data.loadDataset(`cifar100:${root}`, 'train', { cacheDir: null });
  assert.deepEqual([...split.labelArray], [77, 12]);
  assert.equal(split.numClasses, 100);
  split.dispose();
});

function idx(dims: number[], values: number[]): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((dim, i) => header.writeUInt32BE(dim, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(values)]);
}

test('MNIST IDX files, gzipped or not; truncation and bad magic are named', () => {
  const root = temporaryFolder('mcldef-data-');
  const pixels = Array.from({ length: 2 * 28 * 28 }, (_, i) => i % 256);
  writeFileSync(join(root, 'train-images-idx3-ubyte.gz'), gzipSync(idx([2, 28, 28], pixels)));
  writeFileSync(join(root, 'train-labels-idx1-ubyte'), idx([2], [4, 9]));
  const split = data.loadDataset(`mnist:${root}`, 'train', { cacheDir: null });
  assert.deepEqual([split.count, split.channels, split.height, split.width], [2, 1, 28, 28]);
  assert.deepEqual([...split.labelArray], [4, 9]);
  tidy(() => assert.equal(split.images.select(0, 1).flatten().select(0, 0).item(), (28 * 28) % 256));
  split.dispose();
  writeFileSync(join(root, 'train-labels-idx1-ubyte'), idx([3], [1, 2]));
  assert.throws(() => data.loadDataset(`mnist:${root}`, 'train', { cacheDir: null }), /truncated/);
  writeFileSync(join(root, 't10k-images-idx3-ubyte'), Buffer.from('garbage!'));
  writeFileSync(join(root, 't10k-labels-idx1-ubyte'), idx([1], [0]));
  assert.throws(() => data.loadDataset(`mnist:${root}`, 'test', { cacheDir: null }), /not an IDX file/);
});

test('bad specs and folders give one clear error', () => {
  assert.throws(() => data.loadDataset('imagenet:/x', 'train'), /unknown dataset kind 'imagenet'/);
  assert.throws(() => data.loadDataset('cifar10', 'train'), /names no path/);
  assert.throws(
    () => data.loadDataset('cifar10:/nonexistent/folder', 'train'),
    /dataset folder not found: \/nonexistent\/folder/,
  );
  const empty = temporaryFolder('mcldef-data-');
  assert.throws(
    () => data.loadDataset(`cifar10:${empty}`, 'train', { cacheDir: null }),
    /neither CIFAR-10 binary files nor an image tree/,
  );
  const labels = temporaryFolder('mcldef-data-');
  writeFileSync(join(labels, 'test_batch.bin'), cifarRecord(12, 0));
  assert.throws(() => data.loadDataset(`cifar10:${labels}`, 'test', { cacheDir: null }), /label 12, outside 0\.\.9/);
});

test('the cache is used on the second load and rebuilt when a source file changes', () => {
  const root = temporaryFolder('mcldef-data-');
  const cacheDir = temporaryFolder('mcldef-data-');
  writeFileSync(join(root, 'test_batch.bin'), cifarRecord(1, 50));
  const first = data.loadDataset(`cifar10:${root}`, 'test', { cacheDir });
  const cacheFiles = readdirSync(cacheDir);
  assert.equal(cacheFiles.length, 1);
  const second = data.loadDataset(`cifar10:${root}`, 'test', { cacheDir });
  assert.deepEqual([...second.labelArray], [1]);
  writeFileSync(join(root, 'test_batch.bin'), cifarRecord(4, 50));
  utimesSync(join(root, 'test_batch.bin'), new Date(), new Date(Date.now() + 5000));
  const third = data.loadDataset(`cifar10:${root}`, 'test', { cacheDir });
  assert.deepEqual([...third.labelArray], [4], 'stale cache rebuilt');
  assert.deepEqual(readdirSync(cacheDir), cacheFiles, 'replaced in place, no temp files left');
  writeFileSync(join(cacheDir, cacheFiles[0]!), 'corrupt');
  const fourth = data.loadDataset(`cifar10:${root}`, 'test', { cacheDir });
  assert.deepEqual([...fourth.labelArray], [4], 'a corrupt cache is ignored and rewritten');
  for (const split of [first, second, third, fourth]) split.dispose();
});

test('an image tree with a train/ and test/ split loads as imagefolder', () => {
  const root = temporaryFolder('mcldef-data-');
  for (const split of ['train', 'test']) {
    for (const name of ['cat', 'dog']) {
      mkdirSync(join(root, split, name), { recursive: true });
      writeFileSync(
        join(root, split, name, '0.ppm'),
        Buffer.concat([Buffer.from('P6 2 2 255\n'), Buffer.alloc(12, name === 'cat' ? 1 : 2)]),
      );
    }
  }
  const split = data.loadDataset(`imagefolder:${root}`, 'test', { cacheDir: null });
  assert.deepEqual(split.classNames, ['cat', 'dog']);
  assert.deepEqual([split.count, split.height, split.width], [2, 2, 2]);
  split.dispose();
});
