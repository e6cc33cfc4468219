// The model zoo against PyTorch (test/fixtures/models-pytorch.json, made by
// make-model-fixtures.py): state-dict keys, order, shapes and dtypes, and the logits and
// features of a deterministic input with deterministically filled tensors; the registry.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  F,
  type Tensor,
  dispose,
  liveTensorCount,
  nn,
  optim,
  randint,
  randn,
  setNumThreads,
  tidy,
} from '../../src/index.js';
import { fillLikePyTorch, pyTorchInput } from './pytorch-fill.js';

const { createModel, modelNames, archInfo } = nn.models;
type Classifier = nn.models.Classifier;

interface Values {
  shape: number[];
  data: number[];
}

interface ArchFixture {
  num_classes: number;
  input_shape: number[];
  state_dict: [string, number[], string][];
  features: Values;
  logits: Values;
}

const fixture = JSON.parse(readFileSync(new URL('../fixtures/models-pytorch.json', import.meta.url), 'utf8')) as Record<
  string,
  ArchFixture
>;

const ARCHS = ['wrn-16-1', 'wrn-16-2', 'wrn-40-1', 'wrn-40-2', 'preact-resnet18', 'resnet18', 'vgg16-bn', 'cnn-small'];

// One thread: steadier on a shared 2-core machine, where two threads can stall on each other.
setNumThreads(1);

/** Checks max |actual − expected| ≤ 1e-4 · max |expected|; returns that relative error. */
function assertClose(actual: Tensor, expected: Values, what: string): number {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const got = actual.toTypedArray() as Float32Array;
  const scale = Math.max(...expected.data.map(Math.abs));
  let worst = 0;
  expected.data.forEach((value, i) => {
    worst = Math.max(worst, Math.abs(got[i]! - value));
  });
  assert.ok(worst <= 1e-4 * scale, `${what}: max |difference| ${worst} against max |value| ${scale}`);
  return worst / scale;
}

test('the registry lists the architectures, with their input sizes', () => {
  assert.deepEqual(modelNames(), ARCHS);
  assert.deepEqual(Object.keys(fixture).sort(), [...ARCHS].sort());
  assert.deepEqual(archInfo('cnn-small').inputSize, [28, 28]);
  assert.equal(archInfo('cnn-small').inChannels, 1);
  assert.equal(archInfo('wrn-40-2').featureDim, 128);
});

for (const arch of ARCHS) {
  test(`${arch}: PyTorch's state-dict keys, order, shapes and dtypes; logits and features`, () => {
    const expected = fixture[arch]!;
    const model = createModel(arch, { numClasses: expected.num_classes });
    assert.equal(model.numClasses, expected.num_classes);
    const stateDict = model.stateDict();
    assert.deepEqual(
      [...stateDict].map(([key, t]) => [key, [...t.shape], t.dtype]),
      expected.state_dict,
    );
    dispose(stateDict);

    fillLikePyTorch(model);
    model.eval();
    const input = pyTorchInput(expected.input_shape);
    const before = liveTensorCount();
    tidy(() => {
      const features = model.features(input);
      const featureError = assertClose(features, expected.features, `${arch} features`);
      assertClose(model.classify(features), expected.logits, `${arch} classify(features)`);
      const logitError = assertClose(model.forward(input), expected.logits, `${arch} logits`);
      console.log(
        `${arch}: relative error ${featureError.toExponential(1)} (features), ${logitError.toExponential(1)} (logits)`,
      );
    });
    assert.equal(liveTensorCount(), before, 'forward passes leave no tensors behind');
    input.dispose();
    model.dispose();
  });
}

test('checkpoints move between instances: strict loadStateDict of a filled PreAct-ResNet18', () => {
  const source = createModel('preact-resnet18', { numClasses: 10 });
  fillLikePyTorch(source);
  const target = createModel('preact-resnet18', { numClasses: 10 });
  const stateDict = source.stateDict();
  assert.deepEqual(target.loadStateDict(stateDict), { missingKeys: [], unexpectedKeys: [] });
  dispose(stateDict);
  source.eval();
  target.eval();
  const input = pyTorchInput([2, 3, 32, 32]);
  tidy(() => {
    const difference = source.forward(input).sub(target.forward(input)).abs().max().item();
    assert.equal(difference, 0);
  });
  // A head of another width is refused with the mismatched shapes named.
  const other = createModel('preact-resnet18', { numClasses: 43 });
  const sd = source.stateDict();
  assert.throws(() => other.loadStateDict(sd), /size mismatch for linear\.weight/);
  dispose(sd);
  for (const model of [source, target, other]) model.dispose();
  input.dispose();
});

test('training steps in train mode leave no tensors behind (cnn-small, resnet18 on 1 channel)', () => {
  const cases: [Classifier, number[]][] = [
    [createModel('cnn-small', { numClasses: 10 }), [8, 1, 28, 28]],
    [createModel('resnet18', { numClasses: 5, inChannels: 1 }), [2, 1, 32, 32]],
  ];
  for (const [model, shape] of cases) {
    model.train();
    const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
    const images = randn(shape);
    const labels = randint(0, model.numClasses, [shape[0]!]);
    const step = (): number =>
      tidy(() => {
        const loss = F.crossEntropy(model.forward(images), labels);
        optimizer.zeroGrad();
        loss.backward();
        optimizer.step();
        return loss.item();
      });
    step();
    const before = liveTensorCount();
    assert.ok(Number.isFinite(step()));
    assert.equal(liveTensorCount(), before);
    optimizer.dispose();
    model.dispose();
    dispose([images, labels]);
  }
});

test('VGG-16 pools globally on inputs larger than 32×32', () => {
  const model = createModel('vgg16-bn', { numClasses: 10 }).eval();
  tidy(() => {
    assert.deepEqual(model.features(randn([1, 3, 64, 64])).shape, [1, 512]);
    assert.deepEqual(model.forward(randn([1, 3, 64, 64])).shape, [1, 10]);
  });
  model.dispose();
});

test('createModel refuses unknown architectures and bad class or channel counts', () => {
  assert.throws(
    () => createModel('resnet50', { numClasses: 10 }),
    (error: Error) =>
      /unknown architecture 'resnet50'/.test(error.message) && ARCHS.every((name) => error.message.includes(name)),
  );
  for (const numClasses of [0, 1, -3, 2.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => createModel('wrn-16-1', { numClasses }), /number of classes must be an integer ≥ 2/);
  }
  assert.throws(() => createModel('cnn-small', { numClasses: 10, inChannels: 0 }), /input channels/);
  assert.throws(() => createModel('cnn-small', { numClasses: 10 }).forward(randn([1, 1, 32, 32])), /28×28/);
});
