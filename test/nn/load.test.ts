// loadClassifier: the architecture from the caller, the file's metadata or its keys, and
// one short line when weights do not fit (naming the zoo model they do fit).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { type Tensor, dispose, io, liveTensorCount, nn, randn, setNumThreads } from '../../src/index.js';
import { temporaryFolder } from '../helpers/tmp.js';

const { createModel, fittingArchs, loadClassifier, modelNames, recordedArch } = nn.models;

setNumThreads(1);

const folder = temporaryFolder('mcldef-load-');
const ZOO = modelNames().join(', ');

/** A wrn-16-1 for 3 classes, saved with and without its recorded arch. */
const wrn = createModel('wrn-16-1', { numClasses: 3 });
const wrnRecorded = join(folder, 'wrn-recorded.pth');
const wrnBare = join(folder, 'wrn.pth');
io.saveWeights(wrnRecorded, wrn, { arch: 'wrn-16-1', epoch: 7 });
io.saveWeights(wrnBare, wrn);

function assertSameWeights(model: nn.Module, source: nn.Module): void {
  const [got, expected] = [model.stateDict(), source.stateDict()];
  assert.deepEqual([...got.keys()], [...expected.keys()]);
  for (const [key, tensor] of expected) {
    assert.deepEqual(got.get(key)!.toFloat64Array(), tensor.toFloat64Array(), key);
  }
  dispose([got, expected]);
}

/** The error's message, checked to be one short line. */
function failure(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof Error);
    assert.ok(!error.message.includes('\n'), `one line: ${error.message}`);
    return error.message;
  }
  assert.fail('expected an error');
}

test('the arch recorded in the file (pth and safetensors), weights loaded', () => {
  const before = liveTensorCount();
  assert.equal(recordedArch(wrnRecorded), 'wrn-16-1');
  assert.equal(recordedArch(wrnBare), undefined);
  const loaded = loadClassifier({ weights: wrnRecorded, numClasses: 3 });
  assert.equal(loaded.arch, 'wrn-16-1');
  assert.equal(loaded.archSource, 'recorded');
  assert.equal(loaded.metadata['epoch'], 7);
  assertSameWeights(loaded.model, wrn);
  loaded.model.dispose();

  const safetensors = join(folder, 'cnn.safetensors');
  const cnn = createModel('cnn-small', { numClasses: 4 });
  io.saveWeights(safetensors, cnn, { arch: 'cnn-small' });
  assert.equal(recordedArch(safetensors), 'cnn-small');
  const fromSafetensors = loadClassifier({ weights: safetensors, numClasses: 4 });
  assert.equal(fromSafetensors.arch, 'cnn-small');
  assert.equal(fromSafetensors.archSource, 'recorded');
  assertSameWeights(fromSafetensors.model, cnn);
  fromSafetensors.model.dispose();
  cnn.dispose();
  assert.equal(liveTensorCount(), before, 'nothing left but what the caller disposed');
});

test('the arch told from the keys and shapes when the file records none', () => {
  const shapes = wrn.stateDict();
  assert.deepEqual(fittingArchs(shapes, { numClasses: 3 }), ['wrn-16-1']);
  assert.deepEqual(fittingArchs(shapes, { numClasses: 4 }), []);
  dispose(shapes);
  const before = liveTensorCount();
  const loaded = loadClassifier({ weights: wrnBare, numClasses: 3 });
  assert.equal(loaded.arch, 'wrn-16-1');
  assert.equal(loaded.archSource, 'keys');
  assertSameWeights(loaded.model, wrn);
  loaded.model.dispose();

  // A recorded arch that is not in the zoo is passed over for the keys.
  const foreign = join(folder, 'foreign.pth');
  io.saveWeights(foreign, wrn, { arch: 'WideResNet' });
  const fromKeys = loadClassifier({ weights: foreign, numClasses: 3 });
  assert.deepEqual([fromKeys.arch, fromKeys.archSource], ['wrn-16-1', 'keys']);
  fromKeys.model.dispose();

  // PyTorch < 0.4.1 wrote no batch-norm counters; such files still load.
  const stateDict = wrn.stateDict();
  const old = new Map([...stateDict].filter(([key]) => !key.endsWith('.num_batches_tracked')));
  assert.equal(stateDict.size - old.size, 13);
  const oldPath = join(folder, 'old.pth');
  io.saveWeights(oldPath, old);
  dispose(stateDict);
  const fromOld = loadClassifier({ weights: oldPath, numClasses: 3 });
  assert.equal(fromOld.arch, 'wrn-16-1');
  fromOld.model.dispose();
  assert.equal(liveTensorCount(), before);
});

test('the given arch wins over the recorded one', () => {
  const misrecorded = join(folder, 'misrecorded.pth');
  io.saveWeights(misrecorded, wrn, { arch: 'resnet18' });
  const loaded = loadClassifier({ weights: misrecorded, arch: 'wrn-16-1', numClasses: 3 });
  assert.deepEqual([loaded.arch, loaded.archSource], ['wrn-16-1', 'given']);
  assertSameWeights(loaded.model, wrn);
  loaded.model.dispose();
  // Without it, the recorded arch is tried, and the message says where it came from.
  assert.equal(
    failure(() => loadClassifier({ weights: misrecorded, numClasses: 3 })),
    `${misrecorded} does not fit resnet18, the arch recorded in it (97 missing keys: layer1.0.conv1.weight, ` +
      'layer1.0.bn1.weight, …; 76 unexpected: block1.layer.0.bn1.weight, block1.layer.0.bn1.bias, …; ' +
      '1 of another shape: conv1.weight 16×3×3×3 (model 64×3×3×3)); they fit wrn-16-1: use --arch wrn-16-1',
  );
});

test('weights that do not fit the given arch: one short line naming the model they fit', () => {
  const before = liveTensorCount();
  const message = failure(() => loadClassifier({ weights: wrnBare, arch: 'resnet18', numClasses: 3 }));
  assert.equal(
    message,
    `${wrnBare} does not fit resnet18 (97 missing keys: layer1.0.conv1.weight, layer1.0.bn1.weight, …; ` +
      '76 unexpected: block1.layer.0.bn1.weight, block1.layer.0.bn1.bias, …; ' +
      '1 of another shape: conv1.weight 16×3×3×3 (model 64×3×3×3)); they fit wrn-16-1: use --arch wrn-16-1',
  );
  assert.ok(message.length < 300, `${message.length} characters`);
  assert.equal(liveTensorCount(), before, 'the refused model and the file’s tensors are freed');

  // The counts are the key sets' differences (counters a file may lack aside).
  const resnet = createModel('resnet18', { numClasses: 3 });
  const [ours, theirs] = [resnet.stateDict(), wrn.stateDict()];
  const missing = [...ours.keys()].filter((key) => !theirs.has(key) && !key.endsWith('num_batches_tracked'));
  assert.equal(missing.length, 97);
  assert.equal([...theirs.keys()].filter((key) => !ours.has(key)).length, 76);
  assert.deepEqual(
    [...ours].filter(([key, t]) => theirs.has(key) && t.shape.join() !== theirs.get(key)!.shape.join()).map(([k]) => k),
    ['conv1.weight'],
  );
  dispose([ours, theirs]);
  resnet.dispose();

  // Only key names differ: no shape part. Only shapes differ: the likely cause.
  assert.equal(
    failure(() => loadClassifier({ weights: wrnBare, arch: 'vgg16-bn', numClasses: 3 })),
    `${wrnBare} does not fit vgg16-bn (80 missing keys: features.0.weight, features.0.bias, …; ` +
      '82 unexpected: conv1.weight, block1.layer.0.bn1.weight, …); they fit wrn-16-1: use --arch wrn-16-1',
  );
  assert.equal(
    failure(() => loadClassifier({ weights: wrnRecorded, numClasses: 10 })),
    `${wrnRecorded} does not fit wrn-16-1, the arch recorded in it (2 of other shapes: fc.weight 3×64 ` +
      '(model 10×64), fc.bias); another number of classes or input channels?',
  );
  assert.throws(() => loadClassifier({ weights: wrnBare, arch: 'resnet50', numClasses: 3 }), /unknown architecture/);
  assert.equal(liveTensorCount(), before);
});

test('a file that fits no zoo model, with no arch given: a clear error asking for --arch', () => {
  const before = liveTensorCount();
  const encoder = new Map<string, Tensor>([
    ['encoder.weight', randn([8, 4])],
    ['encoder.bias', randn([8])],
  ]);
  const path = join(folder, 'encoder.pth');
  io.saveWeights(path, encoder, { arch: 'mlp' });
  const bare = join(folder, 'encoder.safetensors');
  io.saveWeights(bare, encoder);
  dispose(encoder);
  assert.equal(
    failure(() => loadClassifier({ weights: path, numClasses: 3 })),
    `cannot tell the architecture of ${path}: its recorded arch 'mlp' is not in the zoo and its 2 keys fit ` +
      `no zoo model for 3 classes; give --arch (${ZOO})`,
  );
  assert.equal(
    failure(() => loadClassifier({ weights: bare, numClasses: 3, inChannels: 1 })),
    `cannot tell the architecture of ${bare}: it records no arch and its 2 keys fit no zoo model for 3 classes ` +
      `and 1 input channel; give --arch (${ZOO})`,
  );
  // A zoo model's keys with another head: the shapes are the hint.
  assert.equal(
    failure(() => loadClassifier({ weights: wrnBare, numClasses: 10 })),
    `cannot tell the architecture of ${wrnBare}: it records no arch and its 82 keys fit no zoo model for 10 ` +
      `classes; they have wrn-16-1's keys with other shapes (another number of classes or input channels?); ` +
      `give --arch (${ZOO})`,
  );
  assert.equal(liveTensorCount(), before);
});
