// PyTorch-written checkpoints (../shared/fixtures/pytorch: zip, legacy and bare layouts of
// WRN-16-1 and WRN-16-2) load into our WideResNet and reproduce PyTorch's logits and
// features; the authors' released legacy checkpoint loads with strict keys.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { dispose, liveTensorCount, noGrad, tensor, tidy } from '../../src/index.js';
import { loadWeights, readCheckpoint } from '../../src/io/index.js';
import { WideResNet } from '../../src/nn/models/wrn.js';
import { sharedPath } from '../helpers/shared.js';

interface ArrayFile {
  file: string;
  shape: number[];
}

interface Manifest {
  cases: {
    model: string;
    checkpoints: Record<'zip' | 'legacy' | 'bare_state_dict', string>;
    checkpoint_extra_keys: Record<string, unknown>;
    logits: ArrayFile;
    features: ArrayFile;
    state_dict_keys: number;
    tolerance: number;
  }[];
  input: ArrayFile;
}

const folder = sharedPath('fixtures/pytorch/');
const manifest: Manifest | null =
  folder.skip === false ? (JSON.parse(readFileSync(folder.path + 'manifest.json', 'utf8')) as Manifest) : null;

function float32File(name: string): Float32Array {
  const bytes = readFileSync(folder.path + name);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function maxAbsDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  return worst;
}

const layouts = ['zip', 'legacy', 'bare_state_dict'] as const;

for (const modelName of manifest?.cases.map((entry) => entry.model) ?? ['wrn-16-1', 'wrn-16-2']) {
  for (const layout of layouts) {
    test(`${modelName} ${layout} checkpoint reproduces PyTorch's logits and features`, { skip: folder.skip }, () => {
      const spec = manifest!.cases.find((entry) => entry.model === modelName)!;
      const widenFactor = Number(/wrn-16-(\d+)/.exec(spec.model)![1]);
      const path = folder.path + spec.checkpoints[layout];
      const before = liveTensorCount();

      const checkpoint = readCheckpoint(path);
      assert.equal(checkpoint.format, layout === 'legacy' ? 'legacy' : 'zip');
      assert.equal(checkpoint.stateDict.size, spec.state_dict_keys);
      assert.deepEqual(checkpoint.metadata, layout === 'bare_state_dict' ? {} : spec.checkpoint_extra_keys);
      assert.equal(checkpoint.stateDict.get('block1.layer.0.bn1.num_batches_tracked')?.dtype, 'int64');
      dispose(checkpoint.stateDict);

      const model = new WideResNet({ depth: 16, widenFactor, numClasses: 10 }).eval();
      const loaded = loadWeights(model, path, { strict: true });
      assert.deepEqual(loaded.missingKeys, []);
      assert.deepEqual(loaded.unexpectedKeys, []);
      const [logits, features] = noGrad(() =>
        tidy(() => {
          const input = tensor(float32File(manifest!.input.file), { shape: manifest!.input.shape });
          const penultimate = model.features(input);
          return [model.classify(penultimate).toTypedArray(), penultimate.toTypedArray()];
        }),
      );
      const expectedLogits = float32File(spec.logits.file);
      const expectedFeatures = float32File(spec.features.file);
      assert.ok(maxAbsDifference(logits as Float32Array, expectedLogits) <= spec.tolerance, 'logits');
      assert.ok(maxAbsDifference(features as Float32Array, expectedFeatures) <= spec.tolerance, 'features');
      const forward = noGrad(() =>
        tidy(() =>
          model.forward(tensor(float32File(manifest!.input.file), { shape: manifest!.input.shape })).toTypedArray(),
        ),
      );
      assert.ok(maxAbsDifference(forward as Float32Array, expectedLogits) <= spec.tolerance, 'forward');
      model.dispose();
      assert.equal(liveTensorCount(), before, 'every loaded tensor is freed');
    });
  }
}

const reference = sharedPath('models/mcl-reference/WRN-16-1-badnet.pth.tar');

test("the authors' WRN-16-1 BadNets model (legacy format) loads with strict keys", { skip: reference.skip }, () => {
  const checkpoint = readCheckpoint(reference.path);
  assert.equal(checkpoint.format, 'legacy');
  assert.equal(checkpoint.stateDict.size, 82);
  assert.equal(checkpoint.metadata.epoch, 49);
  // The authors' own figures (SPEC §2: BA 83.01 %, ASR 99.64 % before any defense), as float64s.
  assert.ok(Math.abs((checkpoint.metadata.best_clean_acc as number) - 83.0111111111111) < 1e-12);
  assert.ok(Math.abs((checkpoint.metadata.best_bad_acc as number) - 99.64444444444445) < 1e-12);
  // The optimizer's momentum buffers are tensors: left out of the plain metadata.
  assert.deepEqual(checkpoint.omittedKeys, ['optimizer']);
  dispose(checkpoint.stateDict);

  const model = new WideResNet({ depth: 16, widenFactor: 1, numClasses: 10 }).eval();
  const result = loadWeights(model, reference.path, { strict: true });
  assert.deepEqual([result.missingKeys, result.unexpectedKeys], [[], []]);
  // Trained weights, not the initialization: BN running statistics moved away from (0, 1).
  const runningVar = model.bn1.runningVar!.toFloat64Array();
  assert.ok(runningVar.some((value) => Math.abs(value - 1) > 0.01));
  model.dispose();
});
