// MCLDef on error paths: every inversion, the detection scan and purification free what they
// allocated when they throw (a callback that throws, a model whose loss is NaN), and leave the
// model's mode and gradient flags as they found them. Also: the scan refuses the warp and
// signal methods, which are no size-scan methods.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Tensor, liveTensorCount, setNumThreads, tensor, tidy } from '../../src/index.js';
import type { ImageSplit } from '../../src/data/dataset.js';
import {
  type InversionMethod,
  type InversionPass,
  type InvertedTrigger,
  type DetectOptions,
  detectBackdoor,
  invertTrigger,
  purify,
  stampAdditive,
} from '../../src/defenses/mcldef/index.js';
import type { Trigger } from '../../src/attacks/trigger.js';
import { TinyNet, quadrantSplit } from '../helpers/synthetic.js';

/** A TinyNet whose features, and so logits and every loss, are NaN. */
class NaNNet extends TinyNet {
  override features(input: Tensor): Tensor {
    return tidy(() => super.features(input).mul(NaN));
  }
}

class Planted extends Error {}

/** A callback that throws a Planted error on its `at`-th call (0-based), after recording what it saw. */
function throwingAt<T>(at: number, seen: T[]): (value: T) => void {
  return (value) => {
    seen.push(value);
    if (seen.length > at) throw new Planted(`planted failure on call ${at}`);
  };
}

/** What freezing and unfreezing must leave as it was. */
function modelState(model: TinyNet): { training: boolean; requiresGrad: boolean[] } {
  return { training: model.training, requiresGrad: model.parameters().map((p) => p.requiresGrad) };
}

/** Runs `call`, which must throw `expected`; the live tensor count and the model's state must be as before. */
function assertCleanThrow(
  model: TinyNet,
  call: () => unknown,
  expected: Parameters<typeof assert.throws>[1],
  what: string,
): void {
  const state = modelState(model);
  const before = liveTensorCount();
  assert.throws(call, expected, what);
  assert.equal(liveTensorCount(), before, `${what}: live tensors after the throw`);
  assert.deepEqual(modelState(model), state, `${what}: model mode and gradient flags`);
}

function fixture(): { clean: ImageSplit; model: TinyNet; nan: NaNNet } {
  setNumThreads(1);
  return { clean: quadrantSplit(64, 51), model: new TinyNet(), nan: new NaNNet() };
}

test('the live count is exact here: a finished inversion and its disposed trigger leave nothing behind', () => {
  const { clean, model, nan } = fixture();
  for (const method of ['pattern', 'mask', 'warp', 'signal'] as const) {
    const before = liveTensorCount();
    const trigger = invertTrigger(model, clean, 1, { method, passes: 2, batchSize: 16, attackThreshold: 0 });
    assert.ok(liveTensorCount() > before, `${method}: the trigger holds tensors`);
    trigger.dispose();
    assert.equal(liveTensorCount(), before, method);
  }
  for (const item of [clean, model, nan]) item.dispose();
});

test('every inversion frees its tensors when onPass throws, holding a best trigger by then', () => {
  const { clean, model, nan } = fixture();
  const cases: [InversionMethod, number][] = [
    ['pattern', 1],
    ['mask', 1],
    ['warp', 1],
    ['signal', 0],
  ];
  for (const [method, at] of cases) {
    const seen: InversionPass[] = [];
    // attackThreshold 0: the first pass already keeps a best pattern or mask (the tensors
    // that only the error path can free).
    assertCleanThrow(
      model,
      () =>
        invertTrigger(model, clean, 2, {
          method,
          passes: 3,
          batchSize: 16,
          attackThreshold: 0,
          onPass: throwingAt(at, seen),
        }),
      Planted,
      method,
    );
    assert.equal(seen.length, at + 1, `${method}: onPass calls`);
    if (method === 'pattern' || method === 'mask') assert.equal(seen[0]!.improved, true, `${method}: a best by then`);
  }
  // The published restart and the scan's restart keep different tensors across passes.
  assertCleanThrow(
    model,
    () =>
      invertTrigger(model, clean, 0, {
        passes: 3,
        batchSize: 16,
        attackThreshold: 0,
        restart: 'difference',
        onPass: throwingAt<InversionPass>(2, []),
      }),
    Planted,
    'pattern, restart difference',
  );
  for (const item of [clean, model, nan]) item.dispose();
});

test('every inversion frees its tensors when the loss diverges (a model that outputs NaN)', () => {
  const { clean, model, nan } = fixture();
  const expected: Record<InversionMethod, RegExp> = {
    pattern: /^Error: trigger inversion diverged: loss NaN in pass 0$/,
    mask: /^Error: trigger inversion diverged: loss NaN in pass 0$/,
    warp: /^Error: warp inversion diverged: loss NaN for class 3$/,
    signal: /^Error: signal scan: loss NaN for class 0$/,
  };
  for (const method of ['pattern', 'mask', 'warp', 'signal'] as const) {
    assertCleanThrow(
      nan,
      () => invertTrigger(nan, clean, 3, { method, passes: 3, batchSize: 16 }),
      (error: unknown) => expected[method].test(String(error)),
      method,
    );
  }
  for (const item of [clean, model, nan]) item.dispose();
});

test('the detection scan frees its tensors (its scan subset included) when onClass or a scan throws', () => {
  const { clean, model, nan } = fixture();
  // 32 of the 64 images: the scan draws a subset of its own, which it must free.
  const scan: DetectOptions = { scanPasses: 2, scanImages: 32, batchSize: 16, warpPasses: 1, seed: 1 };
  const classes: number[] = [];
  const onClass = throwingAt(1, classes);
  assertCleanThrow(
    model,
    () => detectBackdoor(model, clean, { ...scan, onClass: (result) => onClass(result.label) }),
    Planted,
    'onClass',
  );
  assert.deepEqual(classes, [0, 1], 'the scan got through class 0 and threw at class 1');
  // With every scan on, the signal scan (first) meets the NaN; with it off, the size scan.
  assertCleanThrow(nan, () => detectBackdoor(nan, clean, scan), /^Error: signal scan: loss NaN/, 'NaN, signal scan');
  for (const method of ['pattern', 'mask'] as const) {
    assertCleanThrow(
      nan,
      () => detectBackdoor(nan, clean, { ...scan, method, signalAmplitude: 0 }),
      /^Error: trigger inversion diverged: loss NaN in pass 0$/,
      `NaN, ${method} size scan`,
    );
  }
  for (const item of [clean, model, nan]) item.dispose();
});

test('the detection scan takes only the pattern and mask methods: warp and signal are refused with one clear line', () => {
  const { clean, model, nan } = fixture();
  for (const method of ['warp', 'signal', 'nonsense']) {
    const before = liveTensorCount();
    assert.throws(
      () => detectBackdoor(model, clean, { method } as never),
      (error: unknown) =>
        error instanceof TypeError &&
        error.message ===
          `detectBackdoor: method must be 'pattern' or 'mask' (the size scan's inversion), not '${method}'; the warp and signal scans run beside it (warpShift, signalAmplitude)`,
      method,
    );
    assert.equal(liveTensorCount(), before, `${method}: refused before any work`);
  }
  assert.throws(
    // @ts-expect-error: 'warp' is no size-scan method (typecheck proves the type error).
    () => detectBackdoor(model, clean, { method: 'warp' }),
    /not 'warp'/,
  );
  // invertTrigger refuses an unknown method too, instead of running the mask inversion.
  assert.throws(
    () => invertTrigger(model, clean, 0, { method: 'nonsense' } as never),
    /^TypeError: invertTrigger: unknown method 'nonsense' \(pattern, mask, warp or signal\)$/,
  );
  for (const item of [clean, model, nan]) item.dispose();
});

test('purify frees its tensors when onEpoch, monitor, the trigger or the loss throws', () => {
  const { clean, model, nan } = fixture();
  using delta = tidy(() => tensor([0.3]).expand([3, 12, 12]).clone());
  const trigger: Trigger = { apply: (images) => stampAdditive(images, delta) };
  const options = { epochs: 3, batchSize: 16, lrSchedule: () => 0.01 };
  // purify leaves the model in eval mode, whether it finishes or throws once training began.
  model.eval();
  nan.eval();
  const epochs: number[] = [];
  const onEpoch = throwingAt(1, epochs);
  assertCleanThrow(
    model,
    () => purify(model, clean, trigger, { ...options, onEpoch: (record) => onEpoch(record.epoch) }),
    Planted,
    'onEpoch',
  );
  assert.deepEqual(epochs, [0, 1], 'threw after the second epoch');
  const monitor = (): never => {
    throw new Planted('the monitor fails');
  };
  assertCleanThrow(model, () => purify(model, clean, trigger, { ...options, monitor }), Planted, 'monitor');
  assertCleanThrow(
    nan,
    () => purify(nan, clean, trigger, options),
    /^Error: purification diverged: loss NaN at epoch 0$/,
    'NaN loss',
  );
  // While the frozen features are computed (the clean images' are kept by then): the model
  // goes back to the mode it came in.
  const failing: Trigger = {
    apply: () => {
      throw new Planted('the trigger fails');
    },
  };
  model.train();
  assertCleanThrow(model, () => purify(model, clean, failing, options), Planted, 'trigger');
  // An inverted trigger is a Trigger (the project's one trigger type).
  const inverted: InvertedTrigger = invertTrigger(model, clean, 1, { passes: 1, batchSize: 16 });
  const asTrigger: Trigger = inverted;
  model.eval();
  assertCleanThrow(model, () => purify(model, clean, asTrigger, { ...options, monitor }), Planted, 'inverted trigger');
  inverted.dispose();
  for (const item of [clean, model, nan]) item.dispose();
});
