// Optimizers and LR schedules against trajectories recorded from PyTorch 1.13.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { dispose, noGrad, optim, tensor, tidy, zeros } from '../../src/index.js';

const fixture = JSON.parse(readFileSync(new URL('../fixtures/engine-pytorch.json', import.meta.url), 'utf8')) as {
  optim: {
    p0: number[];
    grads: number[][];
    cases: {
      kind: 'sgd' | 'adam' | 'adamw';
      options: Record<string, number | boolean | number[]>;
      trajectory: number[][];
    }[];
  };
  schedules: Record<string, number[]>;
};

function makeOptimizer(
  kind: string,
  options: Record<string, number | boolean | number[]>,
  params: ReturnType<typeof tensor>[],
) {
  const o = {
    lr: options.lr as number,
    momentum: options.momentum as number | undefined,
    dampening: options.dampening as number | undefined,
    nesterov: options.nesterov as boolean | undefined,
    weightDecay: options.weight_decay as number | undefined,
    amsgrad: options.amsgrad as boolean | undefined,
    betas: options.betas as [number, number] | undefined,
  };
  const defined = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  if (kind === 'sgd') return new optim.SGD(params, defined as { lr: number });
  if (kind === 'adam') return new optim.Adam(params, defined);
  return new optim.AdamW(params, defined);
}

for (const c of fixture.optim.cases) {
  test(`${c.kind} ${JSON.stringify(c.options)} follows PyTorch's trajectory`, () => {
    const param = tensor(fixture.optim.p0, { requiresGrad: true });
    const optimizer = makeOptimizer(c.kind, c.options, [param]);
    c.trajectory.forEach((expected, step) => {
      param.grad = tidy(() => tensor(fixture.optim.grads[step]!));
      optimizer.step();
      const actual = param.toArray() as number[];
      actual.forEach((value, i) => {
        assert.ok(
          Math.abs(value - expected[i]!) <= 1e-6 * Math.max(1, Math.abs(expected[i]!)),
          `step ${step} element ${i}: ${value} vs ${expected[i]}`,
        );
      });
    });
    optimizer.dispose();
    param.dispose();
  });
}

test('optimizer step skips parameters without gradients, and param groups keep their own lr', () => {
  const a = tensor([1], { requiresGrad: true });
  const b = tensor([1], { requiresGrad: true });
  const sgd = new optim.SGD([{ params: [a] }, { params: [b], lr: 1 }], { lr: 0.1 });
  a.grad = tidy(() => tensor([1]));
  b.grad = tidy(() => tensor([1]));
  sgd.step();
  assert.ok(Math.abs((a.toArray() as number[])[0]! - 0.9) < 1e-7);
  assert.ok(Math.abs((b.toArray() as number[])[0]! - 0) < 1e-7);
  sgd.zeroGrad();
  sgd.step();
  assert.ok(Math.abs((a.toArray() as number[])[0]! - 0.9) < 1e-7, 'no grad, no change');
  assert.throws(() => new optim.SGD([a, a], { lr: 0.1 }), /more than one parameter group/);
  assert.throws(() => new optim.SGD([a], { lr: 0.1, nesterov: true }), /Nesterov/);
  dispose([a, b]);
});

const schedulers: Record<string, (o: optim.SGD) => optim.LRScheduler> = {
  step: (o) => new optim.StepLR(o, 3, 0.5),
  multistep: (o) => new optim.MultiStepLR(o, [2, 5, 9], 0.1),
  cosine: (o) => new optim.CosineAnnealingLR(o, 10, 0.001),
  lambda: (o) => new optim.LambdaLR(o, (epoch) => 0.9 ** epoch),
  onecycle: (o) => new optim.OneCycleLR(o, { maxLr: 1, totalSteps: 12 }),
  onecycle_linear_three_phase: (o) =>
    new optim.OneCycleLR(o, { maxLr: 1, totalSteps: 12, annealStrategy: 'linear', threePhase: true }),
};

for (const [name, expected] of Object.entries(fixture.schedules)) {
  test(`LR schedule ${name} matches PyTorch`, () => {
    const p = zeros([1], { requiresGrad: true });
    const sgd = new optim.SGD([p], { lr: 0.1 });
    const make = schedulers[name];
    assert.ok(make, `no scheduler for ${name}`);
    const scheduler = make(sgd);
    expected.forEach((lr, step) => {
      assert.ok(Math.abs(scheduler.lastLr[0]! - lr) < 1e-9, `step ${step}: ${scheduler.lastLr[0]} vs ${lr}`);
      scheduler.step();
    });
    p.dispose();
  });
}

test('FunctionLR sets absolute rates per epoch (MCLDef CIFAR schedule)', () => {
  const p = zeros([1], { requiresGrad: true });
  const sgd = new optim.SGD([p], { lr: 1 });
  const schedule = new optim.FunctionLR(sgd, (epoch) => (epoch < 1 ? 0.1 : epoch < 10 ? 0.01 : 0.001));
  const seen = [];
  for (let epoch = 0; epoch < 12; epoch++) {
    seen.push(schedule.lastLr[0]);
    schedule.step();
  }
  assert.deepEqual(seen, [0.1, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001]);
  p.dispose();
});

test('clipGradNorm_ scales gradients to the max norm and returns the norm before', () => {
  const a = tensor([0, 0], { requiresGrad: true });
  const b = tensor([0], { requiresGrad: true });
  a.grad = tidy(() => tensor([3, 0]));
  b.grad = tidy(() => tensor([4]));
  const total = optim.clipGradNorm_([a, b], 1);
  assert.ok(Math.abs(total - 5) < 1e-6);
  tidy(() => {
    assert.ok(Math.abs(a.grad!.norm().item() - 0.6) < 1e-5);
    assert.ok(Math.abs(b.grad!.norm().item() - 0.8) < 1e-5);
  });
  optim.clipGradValue_([a, b], 0.7);
  tidy(() => assert.ok(Math.abs(b.grad!.item() - 0.7) < 1e-6));
  b.grad = tidy(() => tensor([NaN]));
  assert.throws(() => optim.clipGradNorm_([a, b], 1), /non-finite/);
  dispose([a, b]);
});

test('exportState/importState resumes SGD momentum and Adam moments exactly', () => {
  for (const make of [
    (p: ReturnType<typeof tensor>) => new optim.SGD([p], { lr: 0.1, momentum: 0.9 }),
    (p: ReturnType<typeof tensor>) => new optim.Adam([p], { lr: 0.1 }),
  ]) {
    const a = tensor([1, 2, 3], { requiresGrad: true });
    const b = tensor([1, 2, 3], { requiresGrad: true });
    const first = make(a);
    const grads = [tensor([0.1, -0.2, 0.3]), tensor([0.5, 0.1, -0.4]), tensor([-0.3, 0.2, 0.1])];
    for (const g of grads.slice(0, 2)) {
      a.grad = g.clone();
      first.step();
    }
    noGrad(() => b.copy_(a.detach()));
    const saved = first.exportState();
    const second = make(b);
    second.importState(saved);
    dispose([...saved.tensors.values()]);
    a.grad = grads[2]!.clone();
    b.grad = grads[2]!.clone();
    first.step();
    second.step();
    assert.deepEqual(b.toArray(), a.toArray());
    first.dispose();
    second.dispose();
    dispose([a, b, ...grads]);
  }
});
