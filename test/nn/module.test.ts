// Module: PyTorch's names and order, train/eval, state dicts and their errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Tensor, dispose, nn, ones, randn, tensor, tidy, zeros } from '../../src/index.js';

class Block extends nn.Module {
  readonly conv1 = this.registerModule('conv1', new nn.Conv2d(3, 4, 3, { padding: 1, bias: false }));
  readonly bn1 = this.registerModule('bn1', new nn.BatchNorm2d(4));
  readonly layer = this.registerModule('layer', new nn.Sequential(new nn.ReLU(), new nn.Conv2d(4, 2, 1)));
  readonly fc = this.registerModule('fc', new nn.Linear(2, 3));

  override forward(x: Tensor): Tensor {
    return tidy(() => this.fc.forward(this.layer.forward(this.bn1.forward(this.conv1.forward(x))).mean([2, 3])));
  }
}

test('parameters and buffers get PyTorch dotted names, in registration order', () => {
  const model = new Block();
  assert.deepEqual(
    [...model.namedParameters()].map(([name]) => name),
    ['conv1.weight', 'bn1.weight', 'bn1.bias', 'layer.1.weight', 'layer.1.bias', 'fc.weight', 'fc.bias'],
  );
  assert.deepEqual(
    [...model.namedBuffers()].map(([name]) => name),
    ['bn1.running_mean', 'bn1.running_var', 'bn1.num_batches_tracked'],
  );
  const sd = model.stateDict();
  assert.deepEqual(
    [...sd.keys()],
    [
      'conv1.weight',
      'bn1.weight',
      'bn1.bias',
      'bn1.running_mean',
      'bn1.running_var',
      'bn1.num_batches_tracked',
      'layer.1.weight',
      'layer.1.bias',
      'fc.weight',
      'fc.bias',
    ],
  );
  assert.equal(model.numParameters(), 4 * 3 * 9 + 4 + 4 + 2 * 4 + 2 + 3 * 2 + 3);
  dispose(sd);
  model.dispose();
});

test('PyTorch default initialization bounds: U(±1/√fan_in) for Linear and Conv2d', () => {
  const linear = new nn.Linear(100, 50);
  const bound = 1 / Math.sqrt(100);
  tidy(() => {
    assert.ok(linear.weight.abs().max().item() <= bound);
    assert.ok(linear.weight.abs().max().item() > 0.9 * bound);
    assert.ok(linear.bias!.abs().max().item() <= bound);
  });
  const conv = new nn.Conv2d(8, 16, 3);
  tidy(() => assert.ok(conv.weight.abs().max().item() <= 1 / Math.sqrt(8 * 9)));
  const kaiming = zeros([64, 32, 3, 3]);
  nn.init.kaimingNormal_(kaiming, { mode: 'fan_out', nonlinearity: 'relu' });
  tidy(() => assert.ok(Math.abs(kaiming.std().item() - Math.sqrt(2 / (64 * 9))) < 0.01));
  const xavier = zeros([200, 300]);
  nn.init.xavierUniform_(xavier);
  tidy(() => assert.ok(xavier.abs().max().item() <= Math.sqrt(6 / 500)));
  dispose([kaiming, xavier]);
  linear.dispose();
  conv.dispose();
});

test('train() and eval(): batch norm switches between batch and running statistics, dropout turns off', () => {
  const bn = new nn.BatchNorm2d(2);
  const x = tidy(() => randn([8, 2, 3, 3]).mul(3).add(5));
  tidy(() => {
    bn.train();
    const y = bn.forward(x);
    assert.ok(Math.abs(y.mean().item()) < 1e-5, 'batch statistics normalize to mean 0');
    assert.equal(bn.numBatchesTracked?.item(), 1);
    assert.ok(bn.runningMean!.mean().item() > 0.4, 'running mean moved towards 5 by momentum 0.1');
    bn.eval();
    const z = bn.forward(x);
    assert.ok(z.mean().item() > 1, 'eval uses the running statistics');
    assert.equal(bn.numBatchesTracked?.item(), 1, 'eval does not count batches');
    const dropout = new nn.Dropout(0.5).eval();
    assert.deepEqual(dropout.forward(ones([4])).toArray(), [1, 1, 1, 1]);
    dropout.train();
    const dropped = dropout.forward(ones([1000]));
    assert.ok(dropped.eq(0).sum().item() > 300, 'train mode drops');
  });
  x.dispose();
  bn.dispose();
});

test('stateDict → loadStateDict round trip copies values', () => {
  const a = new Block();
  const b = new Block();
  const sd = a.stateDict();
  b.loadStateDict(sd);
  tidy(() => {
    const x = randn([2, 3, 5, 5]);
    a.eval();
    b.eval();
    assert.deepEqual(a.forward(x).toArray(), b.forward(x).toArray());
  });
  dispose(sd);
  a.dispose();
  b.dispose();
});

test('loadStateDict names missing, unexpected and mis-shaped keys, and changes nothing on error', () => {
  const model = new Block();
  const sd = model.stateDict();
  const before = tidy(() => model.fc.weight.clone());
  sd.get('fc.bias')?.dispose();
  sd.delete('fc.bias');
  sd.set('extra.weight', tensor([1]));
  sd.get('conv1.weight')?.dispose();
  sd.set('conv1.weight', zeros([4, 3, 5, 5]));
  sd.get('fc.weight')?.dispose();
  sd.set('fc.weight', zeros([3, 2]));
  assert.throws(
    () => model.loadStateDict(sd),
    (error: Error) => {
      assert.ok(error instanceof nn.StateDictError);
      assert.match(error.message, /missing keys: fc\.bias/);
      assert.match(error.message, /unexpected keys: extra\.weight/);
      assert.match(
        error.message,
        /size mismatch for conv1\.weight: the model has \[4, 3, 3, 3\], the state dict \[4, 3, 5, 5\]/,
      );
      return true;
    },
  );
  tidy(() => assert.deepEqual(model.fc.weight.toArray(), before.toArray(), 'nothing copied'));
  sd.get('conv1.weight')?.dispose();
  sd.delete('conv1.weight');
  const result = model.loadStateDict(sd, { strict: false });
  assert.deepEqual(result.missingKeys, ['conv1.weight', 'fc.bias']);
  assert.deepEqual(result.unexpectedKeys, ['extra.weight']);
  tidy(() => assert.equal(model.fc.weight.abs().sum().item(), 0, 'non-strict load copied the rest'));
  dispose([sd, before]);
  model.dispose();
});

test('Module.to(dtype) converts parameters in place and keeps them trainable', () => {
  const linear = new nn.Linear(3, 2);
  const weight = linear.weight;
  linear.to('float64');
  assert.equal(linear.weight, weight, 'same Tensor object');
  assert.equal(weight.dtype, 'float64');
  assert.equal(weight.requiresGrad, true);
  tidy(() =>
    linear
      .forward(ones([1, 3], { dtype: 'float64' }))
      .sum()
      .backward(),
  );
  assert.equal(weight.grad?.dtype, 'float64');
  linear.dispose();
});

test("Module.to('channels_last') re-lays out conv weights in place: same values, outputs and gradients", () => {
  const model = new Block();
  const x = randn([2, 3, 5, 5]);
  const weight = model.conv1.weight;
  const values = weight.toArray();
  const expected = tidy(() => model.forward(x).toArray());
  model.to('channels_last');
  model.to('channels_last'); // already NHWC: libtorch hands back the same tensor
  assert.equal(model.conv1.weight, weight, 'same Tensor object');
  assert.deepEqual(weight.toArray(), values);
  // NHWC strides: a flat view of the 4-D weight is impossible, of the 2-D one still fine.
  assert.throws(() => weight.view([-1]), /view/);
  assert.deepEqual(model.fc.weight.view([-1]).shape, [6]);
  const got = tidy(() => model.forward(x).toArray()) as number[][];
  (expected as number[][]).forEach((row, i) =>
    row.forEach((value, j) => assert.ok(Math.abs(value - got[i]![j]!) < 1e-5)),
  );
  tidy(() => model.forward(x).sum().backward());
  assert.deepEqual(weight.grad?.shape, [4, 3, 3, 3]);
  assert.equal(weight.requiresGrad, true);
  model.to('contiguous');
  assert.deepEqual(weight.view([-1]).shape, [108]);
  dispose([x]);
  model.dispose();
});

test('a frozen module (requiresGrad_(false)) gives no parameter gradients', () => {
  const linear = new nn.Linear(3, 1).requiresGrad_(false);
  const x = tensor([[1, 2, 3]], { requiresGrad: true });
  tidy(() => linear.forward(x).sum().backward());
  assert.equal(linear.weight.grad, null);
  assert.notEqual(x.grad, null);
  linear.dispose();
  x.dispose();
});

test('recalibrateBatchNorm: running statistics become the equal-weight average of the batches', () => {
  const bn = new nn.BatchNorm2d(2);
  // Stale statistics and a momentum that recalibration must restore afterwards.
  tidy(() => {
    bn.runningMean!.fill_(9);
    bn.runningVar!.fill_(9);
  });
  const weightBefore = bn.weight!.toArray();
  // Channel 0: batch means 1 and 3 (variance 0 within each); channel 1: values ±1 and ±2.
  const first = tensor([1, 1, -1, 1, 1, 1, -1, 1], { shape: [2, 2, 1, 2] });
  const second = tensor([3, 3, -2, 2, 3, 3, -2, 2], { shape: [2, 2, 1, 2] });
  bn.eval();
  nn.recalibrateBatchNorm(bn, [first, second]);
  assert.equal(first.isDisposed, true, 'each batch is disposed once used');
  const mean = bn.runningMean!.toArray() as number[];
  const variance = bn.runningVar!.toArray() as number[];
  assert.ok(Math.abs(mean[0]! - 2) < 1e-6 && Math.abs(mean[1]!) < 1e-6, `mean ${mean}`);
  // Unbiased batch variances (n = 4): channel 0: 0 and 0; channel 1: 4/3 and 16/3 → 10/3.
  assert.ok(Math.abs(variance[0]!) < 1e-6 && Math.abs(variance[1]! - 10 / 3) < 1e-5, `var ${variance}`);
  assert.equal(bn.numBatchesTracked!.item(), 2);
  assert.equal(bn.momentum, 0.1, 'momentum restored');
  assert.equal(bn.training, false, 'mode restored');
  assert.deepEqual(bn.weight!.toArray(), weightBefore, 'parameters unchanged');
  bn.dispose();
});
