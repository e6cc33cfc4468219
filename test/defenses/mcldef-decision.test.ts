// The detection decision (detect.ts): the size index's candidates, confirmed by restarts that
// find the same trigger again. Scans below are measured ones (bench:detection, AMD EPYC).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { tensor } from '../../src/index.js';
import { scans } from '../helpers/scans.js';
import {
  DEFAULT_MIN_STABILITY,
  decideTarget,
  decisionSentence,
  largestCosine,
  sizeCandidates,
} from '../../src/defenses/mcldef/detect.js';

// Clean cnn-small on Fashion-MNIST (the demo's recipe, seed 2), scan seed 0: class 8 (bag) is easy.
const cleanFashion = [200, 140, 145, 165, 161, 108, 156, 175, 64, 106];
// The authors' model, scan seed 0: target 5.
const authors = [128, 102, 100, 96, 138, 25, 146, 89, 135, 101];

test('size candidates: index above the threshold and below the median, largest index first', () => {
  assert.deepEqual(sizeCandidates(cleanFashion), [8]);
  assert.deepEqual(sizeCandidates(authors), [5]);
  // Large sizes are no candidates, however unusual.
  assert.deepEqual(sizeCandidates([60, 70, 80, 65, 75, 62, 71, 68, 77, 900]), []);
  assert.deepEqual(sizeCandidates([9, 60, 70, 80, 65, 75, 62, 71, 68, 20]), [0, 9]);
});

test('largest cosine between patterns, over every pair', () => {
  const a = tensor([1, 0, 0, 0]);
  const b = tensor([0.6, 0.8, 0, 0]);
  const c = tensor([0, 0, 1, 0]);
  assert.ok(Math.abs(largestCosine([a, b, c]) - 0.6) < 1e-6);
  assert.ok(Math.abs(largestCosine([a, c]) - 0) < 1e-6);
  for (const t of [a, b, c]) t.dispose();
});

test('decision: an easy class whose restarts wander is no backdoor; a trigger found again is', () => {
  // Measured agreements: the bag class 0.17 (largest of three pairs), the authors' target 0.58.
  const easy = decideTarget(scans(cleanFashion, { 8: 0.17 }));
  assert.equal(easy.target, null);
  assert.deepEqual(easy.vetoed, [8]);
  assert.ok(easy.bySize.indices[8]! > 4.5, 'the index alone would flag it');
  const sentence = decisionSentence(easy, scans(cleanFashion, { 8: 0.17 }));
  assert.match(
    sentence,
    /^No class stands out\. The size index also flagged class 8 \(index 4\.\d\d, agreement 0\.17\)/,
  );

  const backdoor = decideTarget(scans(authors, { 5: 0.58 }));
  assert.equal(backdoor.target, 5);
  assert.equal(backdoor.flaggedBy, 'size');
  assert.ok(backdoor.margin > 1.5, `margin ${backdoor.margin}`);
  assert.match(
    decisionSentence(backdoor, scans(authors, { 5: 0.58 })),
    /^Class 5: its inverted trigger is anomalously small/,
  );

  // The agreement threshold sits between the two.
  assert.ok(DEFAULT_MIN_STABILITY > 0.47 && DEFAULT_MIN_STABILITY < 0.56);
  assert.equal(decideTarget(scans(authors, { 5: 0.47 })).target, null);
  // Without restarts the half-median rule decides: 25 is 0.2 of the median, 64 is 0.41.
  assert.equal(decideTarget(scans(authors), { restarts: 0 }).target, 5);
  assert.equal(decideTarget(scans(cleanFashion), { restarts: 0 }).target, 8);
  // A candidate never restarted (more than three flagged) is not confirmed.
  assert.equal(decideTarget(scans(authors)).target, null);
});

test('decision: a large trigger is flagged when its restarts agree, whatever its fraction of the median', () => {
  // A trigger at 0.6 of the median with a strong index: the half-median rule hid it.
  const sizes = [100, 104, 98, 60, 101, 97, 103, 99, 102, 96];
  assert.equal(decideTarget(scans(sizes), { restarts: 0 }).target, null);
  assert.equal(decideTarget(scans(sizes, { 3: 0.7 })).target, 3);
});

test('decision: a backdoor whose restarts keep different pixels of a large trigger is confirmed by its features', () => {
  // The 11×11 patch model (target 3), scan seed 0: three inversions, agreement 0.02; the images
  // its trigger stamps sit 1.36 times the median separation from class 3's clean images.
  const sizes = [258, 172, 232, 35, 204, 244, 185, 204, 213, 148];
  const separations = [2.31, 1.3, 1.91, 2.46, 2.0, 2.29, 1.7, 1.39, 1.72, 1.18];
  const decision = decideTarget(scans(sizes, { 3: 0.02 }, separations), {});
  assert.equal(decision.target, 3);
  assert.ok(Math.abs(decision.separationRatios![3]! - 2.46 / ((1.72 + 1.91) / 2)) < 1e-9);
  assert.match(
    decisionSentence(decision, scans(sizes, { 3: 0.02 })),
    /a cluster of their own in feature space \(separation 1\.36/,
  );
  // Neither confirmation: vetoed. The clean Fashion-MNIST bag class: agreement 0.27, 0.79.
  const bag = [1.17, 0.64, 1.28, 1.01, 1.49, 0.53, 0.97, 0.99, 0.79, 1.01];
  const easy = decideTarget(scans(cleanFashion, { 8: 0.27 }, bag));
  assert.equal(easy.target, null);
  assert.deepEqual(easy.vetoed, [8]);
  // minSeparationRatio 0: the restarts alone decide.
  assert.equal(decideTarget(scans(sizes, { 3: 0.02 }, separations), { minSeparationRatio: 0 }).target, null);
});

test('decision: a trigger at most a tenth of the median size needs no confirmation (the border frame, 0.016)', () => {
  // The one-pixel border frame (target 7), scan seed 0: agreement 0.00, separation 0.72.
  const sizes = [781, 968, 990, 954, 810, 955, 708, 14, 722, 910];
  const separations = [2.33, 2.06, 1.98, 2.4, 3.35, 3.05, 1.69, 1.7, 4.27, 2.4];
  const decision = decideTarget(scans(sizes, { 7: 0 }, separations));
  assert.equal(decision.target, 7);
  assert.ok(decision.bySize.indices[7]! > 24 && decision.margin > 12);
  assert.match(
    decisionSentence(decision, scans(sizes)),
    /needs no confirmation \(0\.016 of the median size, at most 0\.1\)/,
  );
  assert.equal(decideTarget(scans(sizes, { 7: 0 }, separations), { strongSizeFraction: 0 }).target, null);
  // The clean Fashion-MNIST bag class of seed 4: index 12.97 (sizes tightly clustered), but
  // its trigger is 0.25 of the median and its images look like bags (0.92): no backdoor.
  // Measured: class 1 (trousers, index 3.52) restarted with agreement 0.47, the most any easy
  // class reached; classes 8 and 5 were not restarted in that scan.
  const bags = [189, 125, 185, 180, 245, 82, 188, 167, 45, 193];
  const bagSeparations = [2.457, 1.001, 2.819, 1.7, 2.808, 1.075, 2.046, 2.201, 1.754, 1.732];
  const easy = decideTarget(scans(bags, { 1: 0.47 }, bagSeparations));
  assert.ok(easy.bySize.indices[8]! > 12);
  assert.equal(easy.target, null);
  assert.deepEqual(easy.vetoed, [8, 5, 1]);
});

test('decision: a faint full-image blend inverts to a small trigger; the clean WRN-16-1 easy class stays vetoed', () => {
  // Blended at alpha 0.1 (target 8), scan seed 0: the pattern inversion found 39 pixels
  // against a median of 880, and its images separated at 1.68 of the median as well.
  const faint = [883, 921, 968, 895, 821, 866, 814, 811, 39, 934];
  const faintSeparations = [1.521, 1.686, 1.212, 2.015, 1.327, 2.553, 1.737, 1.405, 2.697, 1.177];
  const blended = decideTarget(scans(faint, {}, faintSeparations));
  assert.equal(blended.target, 8);
  assert.ok(blended.margin > 16, `margin ${blended.margin}`);
  assert.ok(Math.abs(blended.separationRatios![8]! - 2.697 / ((1.521 + 1.686) / 2)) < 1e-9);
  // The clean WRN-16-1, scan seed 2: class 9 (trucks) has the smallest trigger (index 2.17) but
  // its restarts wander (0.14) and its images stay near its clean ones (0.56 of the median).
  const clean = [228, 154, 238, 236, 178, 169, 161, 170, 193, 121];
  const cleanSeparations = [2.137, 1.3, 1.866, 2.515, 2.141, 2.459, 1.6, 1.33, 1.389, 0.973];
  const decision = decideTarget(scans(clean, { 9: 0.14 }, cleanSeparations));
  assert.equal(decision.target, null);
  assert.deepEqual(decision.vetoed, [9]);
  assert.ok(decision.bySize.indices[9]! > 2 && decision.bySize.indices[9]! < 2.3);
});
