// BA, ASR, RA, ASR without the trigger and DER (SPEC §3) on six scripted images whose
// predictions are known, counted by hand below.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Tensor, nn, tensor, tidy } from '../../src/index.js';
import { ImageSplit } from '../../src/data/dataset.js';
import { type TestTimeTrigger, defenseEffectivenessRating, evaluate } from '../../src/eval/metrics.js';

// Each image is 1×1×3: pixel 0 = 50·(the class the model predicts), pixel 1 = the trigger's
// slot (0 on clean images), pixel 2 = 255 when the model obeys the trigger.
const labels = [0, 1, 1, 2, 1, 2];
const cleanPredictions = [0, 1, 0, 2, 1, 0];
const obeysTrigger = [1, 1, 0, 1, 0, 0];

/** Predicts the class coded in pixel 0, or class 0 when the trigger is on an obedient image. */
class ScriptedModel extends nn.Module {
  override forward(x: Tensor): Tensor {
    return tidy(() => {
      const code = x.narrow(3, 0, 1).reshape([-1, 1]);
      const distance = code.sub(tensor([[0, 50 / 255, 100 / 255]]));
      const triggered = x
        .narrow(3, 1, 1)
        .reshape([-1, 1])
        .mul(x.narrow(3, 2, 1).reshape([-1, 1]));
      return distance
        .mul(distance)
        .neg()
        .add(triggered.mul(tensor([[1e6, 0, 0]])));
    });
  }
}

function scriptedSplit(): ImageSplit {
  const pixels = new Uint8Array(labels.length * 3);
  cleanPredictions.forEach((prediction, i) => {
    pixels[3 * i] = 50 * prediction;
    pixels[3 * i + 2] = 255 * obeysTrigger[i]!;
  });
  return new ImageSplit({
    pixels,
    labels: Int32Array.from(labels),
    channels: 1,
    height: 1,
    width: 3,
    classNames: ['a', 'b', 'c'],
    normalization: { mean: [0], std: [1] },
    source: 'scripted',
  });
}

function slotTrigger(mode: 'all-to-one' | 'all-to-all'): TestTimeTrigger {
  return {
    mode,
    targetOf: (label, numClasses) => (mode === 'all-to-one' ? 0 : (label + 1) % numClasses),
    apply: (images) =>
      tidy(() => {
        const stamped = images.clone();
        stamped.narrow(3, 1, 1).fill_(1);
        return stamped;
      }),
  };
}

test('evaluate: every metric against hand counts, all-to-one and all-to-all', () => {
  const split = scriptedSplit();
  const model = new ScriptedModel();
  const normalization = split.normalization;
  try {
    // Clean predictions [0,1,0,2,1,0] against labels [0,1,1,2,1,2]: 4 of 6 right.
    const plain = evaluate(model, split, { normalization, batchSize: 4 });
    assert.ok(Math.abs(plain.ba - (100 * 4) / 6) < 1e-9);
    assert.ok(Number.isNaN(plain.asr) && Number.isNaN(plain.asr_no_trigger));

    // All-to-one, target 0: images 1..5 count. Stamped predictions [_,0,0,0,1,0]: 4 of 5 hit,
    // one (image 4) keeps its label; without the trigger images 2 and 5 are already at 0.
    const oneToOne = evaluate(model, split, { normalization, trigger: slotTrigger('all-to-one'), batchSize: 4 });
    assert.equal(oneToOne.poison_n, 5);
    assert.ok(Math.abs(oneToOne.asr - 80) < 1e-9);
    assert.ok(Math.abs(oneToOne.ra - 20) < 1e-9);
    assert.ok(Math.abs(oneToOne.asr_no_trigger - 40) < 1e-9);
    assert.ok(Math.abs(oneToOne.ba_non_target! - 60) < 1e-9, 'images 1, 3, 4 of 1..5 right');

    // All-to-all, target (y+1) mod 3 = [1,2,2,0,2,0] over all six images. Stamped predictions
    // [0,0,0,0,1,0] hit images 3 and 5, keep the label on 0 and 4; clean image 5 already hits.
    const allToAll = evaluate(model, split, { normalization, trigger: slotTrigger('all-to-all') });
    assert.equal(allToAll.poison_n, 6);
    assert.ok(Math.abs(allToAll.asr - (100 * 2) / 6) < 1e-9);
    assert.ok(Math.abs(allToAll.ra - (100 * 2) / 6) < 1e-9);
    assert.ok(Math.abs(allToAll.asr_no_trigger - 100 / 6) < 1e-9);
    assert.equal(allToAll.ba_non_target, undefined);
  } finally {
    model.dispose();
    split.dispose();
  }
});

test('evaluate stamps each triggered image with its position in the test split', () => {
  const split = scriptedSplit();
  const model = new ScriptedModel();
  const seen: number[][] = [];
  const base = slotTrigger('all-to-one');
  const recording: TestTimeTrigger = {
    ...base,
    apply: (images, indices) => {
      seen.push(indices === undefined ? [] : Array.from(indices.toTypedArray() as BigInt64Array, Number));
      return base.apply(images);
    },
  };
  try {
    // Target 0 leaves out image 0; batches of 4 hold images 0..3 and 4..5.
    const metrics = evaluate(model, split, { normalization: split.normalization, trigger: recording, batchSize: 4 });
    assert.deepEqual(seen, [
      [1, 2, 3],
      [4, 5],
    ]);
    assert.ok(Math.abs(metrics.asr - 80) < 1e-9, 'the same result as without indices');
  } finally {
    model.dispose();
    split.dispose();
  }
});

test('defenseEffectivenessRating: (max(0, ΔASR) − max(0, ΔBA) + 1) / 2 in fractions', () => {
  // ASR 99 → 2, BA 80 → 78: (0.97 − 0.02 + 1) / 2.
  assert.ok(Math.abs(defenseEffectivenessRating({ ba: 80, asr: 99 }, { ba: 78, asr: 2 }) - 0.975) < 1e-12);
  // A BA gain and an ASR rise both count as zero.
  assert.equal(defenseEffectivenessRating({ ba: 70, asr: 5 }, { ba: 72, asr: 9 }), 0.5);
});
