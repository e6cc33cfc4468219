// The features' evidence of a class's inverted trigger (evidence.ts): every statistic against
// the same arithmetic done here in plain JavaScript on the model's eval-mode features.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Tensor, liveTensorCount, manualSeed, noGrad, setNumThreads, tensor, tidy } from '../../src/index.js';
import type { Trigger } from '../../src/attacks/trigger.js';
import { normalize, toUnitRange } from '../../src/data/normalization.js';
import { cleanFeatureStats, featureEvidence, isClassifier } from '../../src/defenses/mcldef/evidence.js';
import { TinyNet, quadrantSplit } from '../helpers/synthetic.js';

type Rows = number[][];

function rowsOf(tensor: Tensor): Rows {
  return tensor.toArray() as Rows;
}

function meanRow(rows: Rows): number[] {
  return rows[0]!.map((_, j) => rows.reduce((sum, row) => sum + row[j]!, 0) / rows.length);
}

const distance = (a: number[], b: number[]): number => Math.hypot(...a.map((x, j) => x - b[j]!));
const cosine = (a: number[], b: number[]): number =>
  a.reduce((s, x, j) => s + x * b[j]!, 0) / (Math.hypot(...a) * Math.hypot(...b));

function stats(rows: Rows): { mean: number[]; rms: number; tightness: number } {
  const mean = meanRow(rows);
  const rms = Math.sqrt(rows.reduce((s, row) => s + distance(row, mean) ** 2, 0) / rows.length);
  const tightness = rows.reduce((s, row) => s + cosine(row, mean), 0) / rows.length;
  return { mean, rms, tightness };
}

const close = (actual: number, expected: number, tolerance: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} vs ${expected}`);

test('feature evidence: reach, tightness, spread ratio and separations as computed by hand, in eval mode', () => {
  setNumThreads(1);
  manualSeed(3);
  const split = quadrantSplit(120, 5);
  const model = new TinyNet();
  assert.ok(isClassifier(model));
  // Non-trivial running statistics, so that eval and train mode differ.
  noGrad(() => tidy(() => model.forward(normalize(toUnitRange(split.images), split.normalization))));
  model.train(true);
  const shift: Trigger = { apply: (images) => tidy(() => images.mul(0.5).add(0.4)) };
  const label = 2;
  const evidence = featureEvidence(model, split, label, shift);
  assert.equal(model.training, true, 'the training flag is restored');
  // The scan computes the clean classes' statistics once and passes them in: the same values.
  const precomputed = cleanFeatureStats(model, split);
  assert.deepEqual(featureEvidence(model, split, label, shift, 'float32', precomputed), evidence);
  precomputed.dispose();

  model.eval();
  const featuresOf = (stamp: boolean, members: (y: number) => boolean): { rows: Rows; predicted: number[] } =>
    noGrad(() =>
      tidy(() => {
        const indices = [...split.labelArray.keys()].filter((i) => members(split.labelArray[i]!));
        let images = toUnitRange(split.images.indexSelect(0, tensorOf(indices)));
        if (stamp) images = shift.apply(images);
        const features = model.features(normalize(images, split.normalization));
        return {
          rows: rowsOf(features),
          predicted: Array.from(model.classify(features).argmax(1).toFloat64Array()),
        };
      }),
    );
  const stamped = featuresOf(true, (y) => y !== label);
  const s = stats(stamped.rows);
  const byClass = [0, 1, 2, 3].map((c) => stats(featuresOf(false, (y) => y === c).rows));
  const own = byClass[label]!;
  close(evidence.reach, stamped.predicted.filter((p) => p === label).length / stamped.rows.length, 1e-9, 'reach');
  close(evidence.stampedTightness, s.tightness, 1e-4, 'stamped tightness');
  close(evidence.cleanTightness, own.tightness, 1e-4, 'clean tightness');
  close(evidence.spreadRatio, s.rms / own.rms, 1e-4, 'spread ratio');
  close(evidence.separation, distance(s.mean, own.mean) / own.rms, 1e-4, 'separation');
  const separations = byClass.map((c) => distance(s.mean, c.mean) / c.rms);
  close(evidence.nearestSeparation, Math.min(...separations), 1e-4, 'nearest separation');
  assert.equal(evidence.nearestClass, separations.indexOf(Math.min(...separations)));
  model.dispose();
  split.dispose();
});

test('feature evidence: a trigger that sends every image to one point has tightness 1 and spread ratio 0', () => {
  setNumThreads(1);
  manualSeed(4);
  const split = quadrantSplit(80, 6);
  const model = new TinyNet();
  model.eval();
  const constant: Trigger = { apply: (images) => tidy(() => images.mul(0).add(0.7)) };
  const evidence = featureEvidence(model, split, 1, constant);
  close(evidence.stampedTightness, 1, 1e-5, 'tightness');
  close(evidence.spreadRatio, 0, 1e-5, 'spread ratio');
  assert.ok(evidence.reach === 0 || evidence.reach === 1, 'one point: one prediction for all');
  // Class 3 with a single image: no spread to measure against.
  const single = [...split.labelArray.keys()].filter(
    (i, n, all) => split.labelArray[i] !== 3 || all.findIndex((j) => split.labelArray[j] === 3) === i,
  );
  const lonely = split.select(single);
  assert.throws(() => featureEvidence(model, lonely, 3, constant), /class 3 needs 2 or more scan images/);
  lonely.dispose();
  model.dispose();
  split.dispose();
});

function tensorOf(indices: number[]): Tensor {
  return tensor(Int32Array.from(indices), { dtype: 'int64' });
}

test('feature evidence frees every tensor it makes', () => {
  setNumThreads(1);
  const split = quadrantSplit(60, 7);
  const model = new TinyNet();
  const shift: Trigger = { apply: (images) => tidy(() => images.mul(0.5).add(0.4)) };
  featureEvidence(model, split, 0, shift);
  const before = liveTensorCount();
  for (let label = 0; label < 4; label++) featureEvidence(model, split, label, shift);
  const stats = cleanFeatureStats(model, split);
  for (let label = 0; label < 4; label++) featureEvidence(model, split, label, shift, 'float32', stats);
  stats.dispose();
  assert.equal(liveTensorCount(), before);
  model.dispose();
  split.dispose();
});
