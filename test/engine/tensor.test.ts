// Tensors: creation, dtypes, data round trips, errors as JS exceptions, lifetimes.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  F,
  Tensor,
  arange,
  dispose,
  empty,
  full,
  getNumThreads,
  keep,
  linspace,
  liveTensorCount,
  manualSeed,
  noGrad,
  ones,
  rand,
  randint,
  randn,
  randperm,
  scalar,
  setNumThreads,
  tensor,
  tidy,
  zeros,
} from '../../src/index.js';

test('creation from nested arrays and typed arrays keeps values, shapes and dtypes', () => {
  tidy(() => {
    const a = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    assert.deepEqual(a.shape, [2, 3]);
    assert.equal(a.dtype, 'float32');
    assert.deepEqual(a.toArray(), [
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const cases = [
      [new Float64Array([1.5, -2]), 'float64'],
      [new Int32Array([7, -8]), 'int32'],
      [new BigInt64Array([9n, -10n]), 'int64'],
      [new Uint8Array([0, 255]), 'uint8'],
    ] as const;
    for (const [data, dtype] of cases) {
      const t = tensor(data);
      assert.equal(t.dtype, dtype);
      assert.deepEqual([...t.toTypedArray()], [...data]);
    }
    const b = tensor([true, false, true]);
    assert.equal(b.dtype, 'bool');
    assert.deepEqual(b.toArray(), [true, false, true]);
    assert.equal(tensor([1, 2], { dtype: 'int64' }).toTypedArray() instanceof BigInt64Array, true);
    assert.equal(scalar(3.5).item(), 3.5);
    assert.deepEqual(scalar(2).shape, []);
  });
});

test('factories: zeros, ones, full, arange, linspace, empty, random', () => {
  tidy(() => {
    assert.deepEqual(zeros([2, 2]).toArray(), [
      [0, 0],
      [0, 0],
    ]);
    assert.deepEqual(ones([3], { dtype: 'int32' }).toArray(), [1, 1, 1]);
    assert.deepEqual(full([2], 7).toArray(), [7, 7]);
    assert.equal(arange(4).dtype, 'int64');
    assert.deepEqual(arange(1, 2, 0.25).toArray(), [1, 1.25, 1.5, 1.75]);
    assert.deepEqual(linspace(0, 1, 5).toArray(), [0, 0.25, 0.5, 0.75, 1]);
    assert.deepEqual(empty([3, 0]).shape, [3, 0]);
    const r = rand([1000]);
    assert.ok(r.min().item() >= 0 && r.max().item() < 1);
    assert.ok(Math.abs(randn([10000]).mean().item()) < 0.05);
    const ints = randint(3, 6, [500]);
    assert.equal(ints.dtype, 'int64');
    assert.ok(ints.min().item() === 3 && ints.max().item() === 5);
    const perm = randperm(10);
    assert.deepEqual(perm.sort()[0].toArray(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

test('dtype and device conversion', () => {
  tidy(() => {
    const a = tensor([1.7, -2.2]);
    assert.deepEqual(a.to('int64').toArray(), [1, -2]);
    assert.equal(a.double().dtype, 'float64');
    assert.equal(a.to('cpu').device, 'cpu');
    assert.equal(a.gt(0).dtype, 'bool');
  });
});

test('manualSeed makes random draws repeat exactly', () => {
  tidy(() => {
    manualSeed(42);
    const first = randn([5]).toArray();
    const firstPerm = randperm(8).toArray();
    manualSeed(42);
    assert.deepEqual(randn([5]).toArray(), first);
    assert.deepEqual(randperm(8).toArray(), firstPerm);
  });
});

test('thread count is a setting', () => {
  const before = getNumThreads();
  setNumThreads(1);
  assert.equal(getNumThreads(), 1);
  setNumThreads(before);
  assert.throws(() => setNumThreads(0), /at least 1/);
});

test('libtorch errors arrive as JS exceptions with libtorch messages', () => {
  tidy(() => {
    assert.throws(
      () => tensor([1, 2, 3]).add(tensor([1, 2])),
      /size of tensor a \(3\) must match the size of tensor b \(2\)/,
    );
    assert.throws(() => tensor([[1, 2]]).matmul(tensor([[1, 2]])), /cannot be multiplied|size mismatch|shapes/);
    assert.throws(() => tensor([1, 2]).select(0, 5), /out of range/);
    assert.throws(() => F.crossEntropy(tensor([[1, 2]]), tensor([0.5])), /Expected|expected|float|Long|scalar type/i);
    assert.throws(
      () => F.conv2d(zeros([1, 3, 4, 4]), zeros([2, 4, 3, 3])),
      /expected input\[1, 3, 4, 4\] to have 4 channels/,
    );
    assert.throws(() => zeros([2, 3]).view([4]), /shape '\[4\]' is invalid/);
    assert.throws(() => tensor([1, 2]).to('cuda'), /CUDA|cuda/);
    assert.throws(() => tensor(new Float32Array(5), { shape: [2, 2] }), /needs 16 bytes, got 20/);
  });
});

test('a disposed tensor refuses use with a clear error', () => {
  const t = tensor([1]);
  t.dispose();
  t.dispose();
  assert.equal(t.isDisposed, true);
  assert.throws(() => t.add(1), /tensor used after dispose/);
});

test('tidy frees everything but what it returns; keep() opts out; live count returns to baseline', () => {
  const baseline = liveTensorCount();
  const kept: Tensor[] = [];
  const result = tidy(() => {
    const a = ones([4]);
    const b = a.mul(2).add(1);
    kept.push(keep(a.mul(10)));
    const inner = tidy(() => ({ sum: b.sum(), scratch: undefined as Tensor | undefined }));
    return { total: inner.sum.add(1), list: [b.neg()] };
  });
  assert.equal(liveTensorCount() - baseline, 3, 'total, list[0] and the kept tensor survive');
  assert.equal(result.total.item(), 13);
  dispose(result);
  dispose(kept);
  assert.equal(liveTensorCount(), baseline);
});

test('tidy frees its tensors when the function throws', () => {
  const baseline = liveTensorCount();
  assert.throws(() =>
    tidy(() => {
      ones([3]).mul(2);
      throw new Error('boom');
    }),
  );
  assert.equal(liveTensorCount(), baseline);
});

test('`using` frees a tensor at the end of its block', () => {
  const baseline = liveTensorCount();
  {
    using t = ones([2]);
    assert.equal(liveTensorCount(), baseline + 1);
    assert.equal(t.sum().item(), 2);
  }
  // The sum above was not tracked by a scope: it stays until its finalizer; count only t.
  assert.ok(liveTensorCount() <= baseline + 1);
});

test('autograd: backward, grad accumulation, detach, noGrad, gradients w.r.t. inputs', async () => {
  const { grad } = await import('../../src/index.js');
  tidy(() => {
    const x = tensor([1, 2, 3], { requiresGrad: true });
    x.mul(x).sum().backward();
    assert.deepEqual(x.grad?.toArray(), [2, 4, 6]);
    x.sum().backward();
    assert.deepEqual(x.grad?.toArray(), [3, 5, 7], 'gradients accumulate');
    x.grad = null;
    assert.equal(x.grad, null);
    assert.equal(x.isLeaf, true);
    const y = x.mul(2);
    assert.match(y.gradFn ?? '', /^MulBackward/);
    assert.equal(y.detach().requiresGrad, false);
    assert.equal(
      noGrad(() => x.mul(2).requiresGrad),
      false,
    );
    const out = x.pow(3).sum();
    const [g] = grad(out, [x]);
    assert.deepEqual(g?.toArray(), [3, 12, 27]);
    assert.equal(x.grad, null, 'grad() does not accumulate into .grad');
    const v = tensor([1, 1, 1]);
    x.mul(3).backward(v);
    assert.deepEqual((x.grad as Tensor | null)?.toArray(), [3, 3, 3]);
    assert.throws(() => tensor([1, 2]).sum().backward(), /does not require grad/);
  });
});

test('indexing, shape ops and reductions give PyTorch results', () => {
  tidy(() => {
    const a = tensor([
      [3, 1, 2],
      [9, 7, 8],
    ]);
    assert.deepEqual(a.argmax(1).toArray(), [0, 0]);
    assert.deepEqual(a.topk(2, 1)[1].toArray(), [
      [0, 2],
      [0, 2],
    ]);
    assert.deepEqual(a.argsort(1).toArray(), [
      [1, 2, 0],
      [1, 2, 0],
    ]);
    assert.deepEqual(a.sum(0).toArray(), [12, 8, 10]);
    assert.deepEqual(a.maskedSelect(a.gt(5)).toArray(), [9, 7, 8]);
    assert.deepEqual(a.flip(1).toArray(), [
      [2, 1, 3],
      [8, 7, 9],
    ]);
    assert.deepEqual(a.roll(1, 1).toArray(), [
      [2, 3, 1],
      [8, 9, 7],
    ]);
    assert.deepEqual(F.oneHot(tensor([0, 2], { dtype: 'int64' }), 3).toArray(), [
      [1, 0, 0],
      [0, 0, 1],
    ]);
    assert.deepEqual(
      a.split(1, 0).map((t) => t.shape),
      [
        [1, 3],
        [1, 3],
      ],
    );
    assert.deepEqual(a.norm(1).item(), 30);
    assert.deepEqual(tensor([3, -4]).norm(Infinity).item(), 4);
    assert.ok(Math.abs(a.std().item() - Math.sqrt(58 / 5)) < 1e-5);
    assert.deepEqual(F.pad(tensor([[[[1]]]]), [1, 0, 0, 1]).toArray(), [
      [
        [
          [0, 1],
          [0, 0],
        ],
      ],
    ]);
    const [, s] = F.svd(
      tensor([
        [3, 0],
        [0, 4],
      ]),
    );
    assert.deepEqual(s.toArray(), [4, 3]);
    manualSeed(3);
    const draws = F.bernoulli(full([10000], 0.3))
      .mean()
      .item();
    assert.ok(Math.abs(draws - 0.3) < 0.02, `bernoulli mean ${draws}`);
    const picks = tensor([0, 0, 1, 0]).multinomial(5, true);
    assert.deepEqual(picks.toArray(), [2, 2, 2, 2, 2]);
  });
});

test('finalizer backstop: a forgotten tensor is freed after garbage collection', async () => {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // Let tensors that earlier tests forgot be collected first.
  gc();
  await new Promise((resolve) => setTimeout(resolve, 10));
  const baseline = liveTensorCount();
  (() => {
    for (let i = 0; i < 100; i++) ones([1000]);
  })();
  assert.equal(liveTensorCount(), baseline + 100);
  for (let attempt = 0; attempt < 10 && liveTensorCount() > baseline; attempt++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(liveTensorCount(), baseline);
});

test('bfloat16: conversion rounds to 8 significant bits; raw bits read back as the top half of float32', () => {
  tidy(() => {
    const a = tensor([1, 1 + 2 ** -9, 1 + 2 ** -7, -2.5]);
    const b = a.to('bfloat16');
    assert.equal(b.dtype, 'bfloat16');
    assert.deepEqual(b.float().toArray(), [1, 1, 1 + 2 ** -7, -2.5], '2^-9 is below bfloat16 precision at 1');
    assert.deepEqual(Array.from(b.toTypedArray() as Uint16Array), [0x3f80, 0x3f80, 0x3f81, 0xc020]);
  });
});

test('autocast: convolutions run in bfloat16 within its precision, gradients reach float32 inputs, state restored', async () => {
  const { atPrecision, autocast, grad, isAutocastEnabled } = await import('../../src/index.js');
  manualSeed(3);
  tidy(() => {
    const weight = randn([8, 3, 3, 3]).mul(0.3);
    const input = rand([2, 3, 8, 8]).requiresGrad_(true);
    const conv = (x: Tensor): Tensor => F.conv2d(x, weight, null, { padding: 1 }).relu().mean([2, 3]);
    const exact = conv(input);
    const fast = autocast(() => conv(input.contiguous('channels_last')));
    assert.equal(fast.dtype, 'bfloat16', 'the convolution ran in bfloat16');
    assert.equal(isAutocastEnabled(), false, 'autocast is off again after the function');
    const error = exact.sub(fast.float()).abs().max().item();
    assert.ok(error > 0 && error < 0.05, `bfloat16 error ${error}`);
    // atPrecision returns float32, and its gradient w.r.t. the float32 input is close to the exact one.
    const [exactGrad] = grad(exact.sum(), [input]);
    const viaPrecision = atPrecision('bfloat16', input, conv);
    assert.equal(viaPrecision.dtype, 'float32');
    const [fastGrad] = grad(viaPrecision.sum(), [input]);
    assert.equal(fastGrad!.dtype, 'float32');
    // bfloat16 keeps 8 significant bits and a ReLU may flip near zero: the gradient is an
    // approximation, a few percent off but pointing the same way.
    const gradError = exactGrad!.sub(fastGrad!).norm().item() / exactGrad!.norm().item();
    const cosine = F.cosineSimilarity(exactGrad!.flatten(), fastGrad!.flatten(), 0).item();
    assert.ok(gradError > 0 && gradError < 0.1 && cosine > 0.99, `relative error ${gradError}, cosine ${cosine}`);
    // Nested regions and a throwing function leave the state as it was.
    autocast(() => {
      autocast(() => assert.equal(isAutocastEnabled(), true));
      assert.equal(isAutocastEnabled(), true, 'the inner exit keeps the outer region on');
    });
    assert.throws(
      () =>
        autocast(() => {
          throw new Error('inside');
        }),
      /inside/,
    );
    assert.equal(isAutocastEnabled(), false);
    // channels_last keeps values and shape but not the row-major layout: a flat view fails.
    const channelsLast = input.contiguous('channels_last');
    assert.deepEqual(channelsLast.toArray(), input.toArray());
    assert.deepEqual(input.view([2, -1]).shape, [2, 192]);
    assert.throws(() => channelsLast.view([2, -1]), /view/);
    assert.deepEqual(channelsLast.contiguous().view([2, -1]).shape, [2, 192]);
  });
});

test("precision 'auto': bfloat16 only where /proc/cpuinfo lists native bfloat16", async () => {
  const { cpuinfoHasBfloat16, hasNativeBfloat16, resolvePrecision } = await import('../../src/index.js');
  const cpu = (flags: string): string => `processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: ${flags}\nbogomips\t: 1\n`;
  assert.equal(cpuinfoHasBfloat16(cpu('fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni')), true);
  assert.equal(cpuinfoHasBfloat16(cpu('fpu sse2 avx2 amx_bf16 amx_tile amx_int8')), true);
  // AVX-512 without BF16 emulates bfloat16 (no faster than float32); 'avx512_bf16x' is no such flag.
  assert.equal(cpuinfoHasBfloat16(cpu('fpu sse2 avx2 avx512f avx512bw avx512vl avx512_bf16x')), false);
  assert.equal(cpuinfoHasBfloat16('vm flags\t: avx512_bf16\n'), false, 'only the "flags" line counts');
  assert.equal(cpuinfoHasBfloat16(''), false);
  assert.equal(resolvePrecision('float32'), 'float32');
  assert.equal(resolvePrecision('bfloat16'), 'bfloat16');
  assert.equal(resolvePrecision('auto'), hasNativeBfloat16() ? 'bfloat16' : 'float32');
});
