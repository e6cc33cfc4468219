// Forward hooks and activations of named layers: WRN-16-1 and PreAct-ResNet18 layer
// outputs against PyTorch (test/fixtures/activations-pytorch.json, made by
// make-model-fixtures.py with the weights of pytorch-fill.ts), hook order and removal,
// errors, and tensor lifetimes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { type Tensor, dispose, liveTensorCount, nn, noGrad, randn, setNumThreads, tidy } from '../../src/index.js';
import { fillLikePyTorch, pyTorchInput } from './pytorch-fill.js';

interface LayerSummary {
  shape: number[];
  sum: number;
  abs_sum: number;
  max_abs: number;
  samples: [number, number][];
}

interface ArchFixture {
  num_classes: number;
  input_shape: number[];
  layers: Record<string, LayerSummary>;
}

const fixture = JSON.parse(
  readFileSync(new URL('../fixtures/activations-pytorch.json', import.meta.url), 'utf8'),
) as Record<string, ArchFixture>;

setNumThreads(1);

/** Whether a module has an own `forward` (a hook's wrapper) shadowing its class's. */
const hooked = (module: nn.Module): boolean => Object.hasOwn(module, 'forward');

/** Shape, sums, max |x| and the sampled elements, each within 1e-4 of the tensor's scale. */
function assertMatches(actual: Tensor, expected: LayerSummary, what: string): number {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const data = actual.toFloat64Array();
  let sum = 0;
  let absSum = 0;
  let maxAbs = 0;
  for (const value of data) {
    sum += value;
    absSum += Math.abs(value);
    maxAbs = Math.max(maxAbs, Math.abs(value));
  }
  const scale = expected.max_abs;
  let worst = Math.abs(maxAbs - expected.max_abs);
  for (const [index, value] of expected.samples) worst = Math.max(worst, Math.abs(data[index]! - value));
  assert.ok(worst <= 1e-4 * scale, `${what}: max |difference| ${worst} against max |value| ${scale}`);
  assert.ok(Math.abs(absSum - expected.abs_sum) <= 1e-5 * expected.abs_sum, `${what}: Σ|x| ${absSum}`);
  assert.ok(Math.abs(sum - expected.sum) <= 1e-5 * expected.abs_sum, `${what}: Σx ${sum} against ${expected.sum}`);
  return worst / scale;
}

for (const arch of ['wrn-16-1', 'preact-resnet18']) {
  test(`${arch}: activations of named layers match PyTorch's`, () => {
    const expected = fixture[arch]!;
    const model = nn.models.createModel(arch, { numClasses: expected.num_classes });
    fillLikePyTorch(model);
    model.eval();
    const input = pyTorchInput(expected.input_shape);
    const names = Object.keys(expected.layers);
    const before = liveTensorCount();
    const result = noGrad(() => nn.forwardWithActivations(model, input, names));
    assert.deepEqual([...result.activations.keys()], names, 'in the order asked for');
    let worst = 0;
    for (const name of names) {
      worst = Math.max(worst, assertMatches(result.activations.get(name)!, expected.layers[name]!, `${arch} ${name}`));
    }
    // The head is the last layer: its output is the model's.
    const head = result.activations.get(names[names.length - 1]!)!;
    assert.deepEqual([...result.output.toFloat64Array()], [...head.toFloat64Array()]);
    console.log(`${arch}: ${names.length} layers, worst relative error ${worst.toExponential(1)}`);
    assert.equal(liveTensorCount(), before + names.length + 1, 'only the returned tensors are alive');
    dispose(result);
    assert.equal(liveTensorCount(), before);
    assert.ok(
      [...model.namedModules()].every(([, module]) => !hooked(module)),
      'no hook left behind',
    );
    input.dispose();
    model.dispose();
  });
}

test('activations: returned tensors outlive tidy scopes, the final output is not leaked', () => {
  const model = nn.models.createModel('cnn-small', { numClasses: 3 }).eval();
  const input = randn([2, 1, 28, 28]);
  const before = liveTensorCount();
  const maps = tidy(() => {
    const first = nn.activations(model, input, ['conv1', 'fc1', '']);
    // Inside a nested scope too: kept, so the scope does not free them.
    const second = tidy(() => nn.activations(model, input, ['bn2']));
    return [first, second];
  });
  assert.equal(liveTensorCount(), before + 4, 'conv1, fc1, the logits and bn2');
  const [first, second] = maps as [Map<string, Tensor>, Map<string, Tensor>];
  assert.deepEqual(first.get('conv1')!.shape, [2, 16, 28, 28]);
  assert.deepEqual(first.get('fc1')!.shape, [2, 128]);
  // '' is the model itself: its logits.
  const logits = noGrad(() => model.forward(input));
  assert.deepEqual([...first.get('')!.toFloat64Array()], [...logits.toFloat64Array()]);
  logits.dispose();
  // The copy was taken before features() applied relu_ to fc1's output in place.
  assert.ok(tidy(() => first.get('fc1')!.min().item()) < 0, 'fc1 output before the in-place ReLU');
  assert.deepEqual(second.get('bn2')!.shape, [2, 32, 14, 14]);
  dispose(maps);
  assert.equal(liveTensorCount(), before);
  dispose([input]);
  model.dispose();
});

test('activations carry gradients in grad mode (attention distillation trains through them)', () => {
  const model = new nn.models.SmallCNN({ numClasses: 3 }).eval();
  const input = randn([2, 1, 28, 28]);
  const features = nn.activations(model, input, ['conv2']);
  tidy(() => features.get('conv2')!.pow(2).mean().backward());
  const gradient = tidy(() => model.conv1.weight.grad?.abs().sum().item());
  assert.ok(gradient !== undefined && gradient > 0, 'conv1 gets a gradient through the output of conv2');
  assert.equal(model.fc1.weight.grad, null, 'layers after conv2 get none');
  dispose([features, input]);
  model.zeroGrad();
  model.dispose();
});

class Scale extends nn.Module {
  constructor(readonly factor: number) {
    super();
  }

  override forward(input: Tensor): Tensor {
    return input.mul(this.factor);
  }
}

test('registerForwardHook: module, input and output; registration order; removal', () => {
  const layer = new Scale(2);
  const calls: string[] = [];
  const input = randn([3]);
  const removeA = layer.registerForwardHook((module, x, output) => {
    assert.equal(module, layer);
    assert.equal(x, input);
    assert.deepEqual(
      [...output.toFloat64Array()],
      [...input.toFloat64Array()].map((v) => v * 2),
    );
    calls.push('a');
  });
  const b = (): void => {
    calls.push('b');
  };
  const removeB1 = layer.registerForwardHook(b);
  // The same function twice is two hooks, removed one at a time.
  const removeB2 = layer.registerForwardHook(b);
  let removeC = (): void => undefined;
  // A hook that removes itself while running does not skip the next one.
  removeC = layer.registerForwardHook(() => {
    calls.push('c');
    removeC();
  });
  layer.registerForwardHook(() => calls.push('d'))();
  assert.ok(hooked(layer));
  tidy(() => layer.forward(input));
  assert.deepEqual(calls, ['a', 'b', 'b', 'c']);

  calls.length = 0;
  removeB1();
  removeB1(); // twice: a no-op, the second registration stays
  tidy(() => layer.forward(input));
  assert.deepEqual(calls, ['a', 'b']);

  calls.length = 0;
  removeA();
  removeB2();
  assert.ok(!hooked(layer), 'the class forward is back once the last hook is gone');
  const out = layer.forward(input);
  assert.deepEqual(calls, []);
  assert.deepEqual(
    [...out.toFloat64Array()],
    [...input.toFloat64Array()].map((v) => v * 2),
  );
  dispose([out, input]);
});

test('registerForwardHook: patches to the class forward still apply; an own forward is restored', () => {
  const layer = new Scale(2);
  const input = randn([2]);
  const calls: number[] = [];
  const remove = layer.registerForwardHook((_module, _x, output) => calls.push(output.numel));
  const original = Scale.prototype.forward;
  try {
    Scale.prototype.forward = function (this: Scale, x: Tensor): Tensor {
      return x.mul(this.factor).add(1);
    };
    tidy(() =>
      assert.deepEqual(
        [...layer.forward(input).toFloat64Array()],
        [...input.toFloat64Array()].map((v) => Math.fround(v * 2 + 1)),
      ),
    );
  } finally {
    Scale.prototype.forward = original;
  }
  remove();
  assert.deepEqual(calls, [2]);

  // A forward set on the instance is wrapped, then put back.
  const own = (x: Tensor): Tensor => x.neg();
  layer.forward = own;
  const removeAgain = layer.registerForwardHook(() => calls.push(-1));
  tidy(() => layer.forward(input));
  removeAgain();
  assert.equal(layer.forward, own);
  assert.deepEqual(calls, [2, -1]);
  input.dispose();
});

test('activations: an unknown layer name is an error listing valid names, with no hook installed', () => {
  const model = nn.models.createModel('wrn-16-1', { numClasses: 10 });
  const input = randn([1, 3, 32, 32]);
  const before = liveTensorCount();
  assert.throws(
    () => nn.activations(model, input, ['block1', 'block4.layer.0']),
    (error: Error) =>
      error.message.startsWith(
        "unknown layer 'block4.layer.0' in WideResNet; its layers: conv1, block1, block1.layer, ",
      ) &&
      error.message.includes('… (') &&
      !error.message.includes('\n'),
  );
  assert.ok([...model.namedModules()].every(([, module]) => !hooked(module)));
  assert.equal(liveTensorCount(), before);
  input.dispose();
  model.dispose();
});

class Boom extends nn.Module {
  override forward(): Tensor {
    throw new Error('boom');
  }
}

test('activations: a throwing forward removes the hooks and frees what was captured', () => {
  const model = new nn.Sequential(new nn.Conv2d(1, 2, 3), new Scale(3), new Boom());
  const input = randn([1, 1, 5, 5]);
  const before = liveTensorCount();
  assert.throws(() => tidy(() => nn.activations(model, input, ['0', '1'])), /boom/);
  assert.equal(liveTensorCount(), before, 'the copies of layers 0 and 1 were freed');
  assert.ok([...model.namedModules()].every(([, module]) => !hooked(module)));
  input.dispose();
  model.dispose();
});

test('activations: a layer that does not run is an error, and nothing leaks', () => {
  class Skips extends nn.Module {
    readonly used = this.registerModule('used', new Scale(2));
    readonly unused = this.registerModule('unused', new Scale(5));

    override forward(input: Tensor): Tensor {
      return this.used.forward(input);
    }
  }
  const model = new Skips();
  const input = randn([4]);
  const before = liveTensorCount();
  assert.throws(
    () => nn.activations(model, input, ['used', 'unused']),
    /layers that did not run in Skips\.forward: unused$/,
  );
  assert.equal(liveTensorCount(), before);
  assert.ok(!hooked(model.used) && !hooked(model.unused));
  // An identity model returns its input: the result is a copy, the input stays the caller's.
  const identity = new nn.Sequential();
  const { output } = nn.forwardWithActivations(identity, input, []);
  assert.notEqual(output, input);
  output.dispose();
  assert.ok(!input.isDisposed);
  input.dispose();
});
