// The training loop: a real (small) backdoor is learned; checkpoints resume exactly.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { dispose, setNumThreads, tidy } from '../../src/index.js';
import { createAttack } from '../../src/attacks/index.js';
import { trainModel } from '../../src/train/trainer.js';
import { evaluate } from '../../src/eval/metrics.js';
import { SMALL_TRAINING, TinyNet, quadrantSplit } from '../helpers/synthetic.js';
import { temporaryFolder } from '../helpers/tmp.js';
import { MemoryStore } from './memory-store.js';

const config = SMALL_TRAINING;

test('poisoned training learns the task and the backdoor (BadNets square, 10 %)', () => {
  setNumThreads(1);
  const train = quadrantSplit(800, 1);
  const testSplit = quadrantSplit(300, 2);
  const geometry = { channels: 3, height: 12, width: 12 };
  const attack = createAttack({ name: 'badnets-square', target: 0, poisonRate: 0.1, seed: 3, numClasses: 4, geometry });
  const model = new TinyNet();
  const folder = temporaryFolder('mcldef-train-');
  const result = trainModel({
    model,
    train,
    test: testSplit,
    attack,
    config: { ...config, epochs: 10 },
    metricsPath: join(folder, 'metrics.jsonl'),
  });
  const last = result.epochs.at(-1)!;
  console.log(
    `synthetic BadNets: BA ${last.ba?.toFixed(1)} %, ASR ${last.asr?.toFixed(1)} % in ${result.seconds.toFixed(1)} s`,
  );
  assert.ok(last.ba! >= 90, `BA ${last.ba}`);
  assert.ok(last.asr! >= 90, `ASR ${last.asr}`);
  const lines = readFileSync(join(folder, 'metrics.jsonl'), 'utf8').trim().split('\n');
  assert.equal(lines.length, 10);
  assert.equal(JSON.parse(lines[0]!).epoch, 0);
  // A clean model of the same kind does not respond to the trigger.
  const clean = new TinyNet();
  trainModel({ model: clean, train, config });
  const cleanMetrics = evaluate(clean, testSplit, { normalization: testSplit.normalization, trigger: attack });
  assert.ok(cleanMetrics.asr < 50, `clean model ASR ${cleanMetrics.asr}`);
  for (const item of [model, clean, attack, train, testSplit]) item.dispose();
});

test('a run stopped mid-way resumes from its checkpoint and ends with the same weights', () => {
  setNumThreads(1);
  const train = quadrantSplit(200, 4);
  const store = new MemoryStore();
  const geometry = { channels: 3, height: 12, width: 12 };
  const attack = createAttack({ name: 'blended', target: 1, poisonRate: 0.1, seed: 3, numClasses: 4, geometry });
  const short = { ...config, epochs: 4 };
  const reference = new TinyNet();
  // stateDict() shares storage with the model: clone before training changes it.
  const initial = new Map([...reference.stateDict()].map(([k, t]) => [k, tidy(() => t.clone())]));
  trainModel({ model: reference, train, attack, config: short });

  const resumed = new TinyNet();
  resumed.loadStateDict(initial);
  let batches = 0;
  const first = trainModel({
    model: resumed,
    train,
    attack,
    config: short,
    checkpointPath: 'ckpt',
    store,
    shouldStop: () => ++batches === 7 * 2 + 3, // inside epoch 2 (7 batches an epoch)
  });
  assert.equal(first.stopped, true);
  assert.equal(first.epochs.length, 2);
  // A new process would start from fresh weights; the checkpoint restores them.
  const again = new TinyNet();
  const second = trainModel({ model: again, train, attack, config: short, checkpointPath: 'ckpt', store });
  assert.equal(second.resumedFrom, 2);
  assert.equal(second.epochs.length, 4);
  const a = reference.stateDict();
  const b = again.stateDict();
  for (const [key, value] of a) {
    tidy(() => assert.ok(value.sub(b.get(key)!).abs().max().item() === 0, `${key} differs after resume`));
  }
  dispose([a, b, initial]);
  for (const item of [reference, resumed, again, attack, train]) item.dispose();
});
