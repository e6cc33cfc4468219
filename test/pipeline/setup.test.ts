// Building the model a run names: the architecture told from a checkpoint's keys gives the
// same model and the same later random draws as --arch, although telling it builds zoo models.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { rand } from '../../src/engine/creation.js';
import { dispose } from '../../src/engine/scope.js';
import { saveCheckpoint } from '../../src/io/index.js';
import { createModel } from '../../src/nn/models/index.js';
import { buildModel } from '../../src/pipeline/setup.js';
import { quadrantSplit } from '../helpers/synthetic.js';
import { temporaryFolder } from '../helpers/tmp.js';

test('buildModel: the arch told from the keys, and the generator seeded again, as with --arch', () => {
  const split = quadrantSplit(8, 0);
  const source = createModel('wrn-16-1', { numClasses: 4, inChannels: 3 });
  const weights = join(temporaryFolder('mcldef-setup-'), 'bare.pth');
  const state = source.stateDict();
  saveCheckpoint(weights, state); // a bare state dict: no recorded arch
  dispose(state);
  // Without --arch first, while no zoo model has been built in this process yet.
  const told = buildModel(undefined, split, weights, 5);
  const drawAfterTold = rand([4]).toTypedArray();
  const given = buildModel('wrn-16-1', split, weights, 5);
  const drawAfterGiven = rand([4]).toTypedArray();
  assert.equal(told.arch, 'wrn-16-1');
  assert.deepEqual(drawAfterTold, drawAfterGiven);
  const weight = (model: typeof told.model): Float32Array => {
    const stateDict = model.stateDict();
    const values = stateDict.get('conv1.weight')!.toTypedArray() as Float32Array;
    dispose(stateDict);
    return values;
  };
  assert.deepEqual(weight(told.model), weight(source));
  assert.deepEqual(weight(given.model), weight(source));
  assert.throws(() => buildModel('lenet', split, weights, 5), /unknown architecture 'lenet'; known: wrn-16-1/);
  for (const model of [source, told.model, given.model]) model.dispose();
  split.dispose();
});
