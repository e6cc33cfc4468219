// Writing: our .pth (zip) and .safetensors files reload bit-identically, PyTorch's own
// torch.load opens our .pth (where python3 with torch is installed), writes are atomic,
// and loadWeights reports mismatched keys.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { type Tensor, arange, dispose, liveTensorCount, nn, randn, scalar, tensor, tidy } from '../../src/index.js';
import {
  CheckpointError,
  loadWeights,
  readCheckpoint,
  readSafetensors,
  readWeights,
  saveCheckpoint,
  saveSafetensors,
  saveWeights,
} from '../../src/io/index.js';
import { WideResNet } from '../../src/nn/models/wrn.js';
import { temporaryFolder } from '../helpers/tmp.js';

const folder = temporaryFolder('mcldef-io-');
after(() => rmSync(folder, { recursive: true, force: true }));

function bytesOf(value: Tensor): Buffer {
  const data = value.contiguous();
  const array = data.toTypedArray();
  const bytes = Buffer.from(array.buffer, array.byteOffset, array.byteLength);
  if (data !== value) data.dispose();
  return bytes;
}

function assertIdentical(actual: ReadonlyMap<string, Tensor>, expected: ReadonlyMap<string, Tensor>): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
  for (const [key, want] of expected) {
    const got = actual.get(key)!;
    assert.equal(got.dtype, want.dtype, `${key} dtype`);
    assert.deepEqual(got.shape, want.shape, `${key} shape`);
    assert.ok(bytesOf(got).equals(bytesOf(want)), `${key} bytes`);
  }
}

/** Every dtype the engine has, a 0-d, an empty and a non-contiguous (transposed) tensor. */
function mixedStateDict(): Map<string, Tensor> {
  return tidy(() => {
    const base = randn([3, 4]);
    return new Map<string, Tensor>([
      ['float32', base.mul(1)],
      ['float64', randn([2, 2], { dtype: 'float64' })],
      ['float16', base.to('float16')],
      ['int64', arange(-5, 5).mul(123456789012)],
      ['int32', arange(-3, 3, 1, { dtype: 'int32' })],
      ['int16', arange(-3, 3, 1, { dtype: 'int16' })],
      ['int8', arange(-3, 3, 1, { dtype: 'int8' })],
      ['uint8', arange(0, 256, 1, { dtype: 'uint8' })],
      ['bool', tensor([true, false, true])],
      ['scalar', scalar(2.5)],
      ['empty', randn([0, 3])],
      ['transposed', base.t()],
    ]);
  });
}

test('a WRN-16-1 saved as .pth (zip) and as .safetensors reloads bit-identically', () => {
  const model = new WideResNet({ depth: 16, widenFactor: 1, numClasses: 10 });
  const original = model.stateDict();
  const before = liveTensorCount();
  const pth = join(folder, 'wrn.pth');
  const safetensors = join(folder, 'wrn.safetensors');
  saveCheckpoint(pth, original, { epoch: 3, best_clean_acc: 91.25 });
  saveSafetensors(safetensors, original, { arch: 'wrn-16-1' });

  const fromPth = readCheckpoint(pth);
  assert.equal(fromPth.format, 'zip');
  assert.deepEqual([...fromPth.stateDict.keys()], [...original.keys()]);
  assertIdentical(fromPth.stateDict, original);
  assert.deepEqual(fromPth.metadata, { epoch: 3, best_clean_acc: 91.25 });

  const fromSafetensors = readSafetensors(safetensors);
  assertIdentical(fromSafetensors.stateDict, original);
  assert.deepEqual(fromSafetensors.metadata, { arch: 'wrn-16-1' });
  dispose([fromPth.stateDict, fromSafetensors.stateDict]);
  assert.equal(liveTensorCount(), before);

  // Safetensors data starts 8-byte aligned; storages in the zip 64-byte aligned.
  const file = readFileSync(safetensors);
  assert.equal(Number(file.readBigUInt64LE(0)) % 8, 0);
  assert.deepEqual(
    readdirSync(folder).filter((name) => name.endsWith('.tmp')),
    [],
    'no temporary files left behind',
  );
  dispose(original);
  model.dispose();
});

test('every dtype, 0-d, empty and non-contiguous tensors survive both formats', () => {
  const original = mixedStateDict();
  for (const name of ['mixed.pth', 'mixed.safetensors']) {
    const path = join(folder, name);
    saveWeights(path, original);
    const loaded = readWeights(path);
    assertIdentical(loaded.stateDict, original);
    assert.deepEqual(loaded.stateDict.get('transposed')!.shape, [4, 3]);
    dispose(loaded.stateDict);
  }
  dispose(original);
});

test('metadata: nested values and big integers round-trip through .pth; DataParallel prefixes are stripped', () => {
  const weights = new Map([['module.fc.weight', randn([2, 2])]]);
  const path = join(folder, 'meta.pth');
  const metadata = { epoch: 7, acc: 12.5, arch: 'wrn', flags: [true, null, 'x'], nested: { lr: 0.1 }, big: 2n ** 70n };
  saveCheckpoint(path, weights, metadata);
  const loaded = readCheckpoint(path);
  assert.deepEqual([...loaded.stateDict.keys()], ['fc.weight']);
  assert.deepEqual(loaded.metadata, metadata);
  dispose([loaded.stateDict, weights]);
});

test('writes are atomic: a failed save leaves the existing file as it was and no temporary file', () => {
  const path = join(folder, 'keep.pth');
  writeFileSync(path, 'previous contents');
  const weights = new Map([['w', randn([2])]]);
  assert.throws(
    () => saveCheckpoint(path, weights, { callback: () => 1 }),
    (error: unknown) => error instanceof CheckpointError && error.code === 'bad-metadata',
  );
  assert.equal(readFileSync(path, 'utf8'), 'previous contents');
  assert.throws(
    () => saveSafetensors(join(folder, 'missing-folder', 'x.safetensors'), weights),
    (error: unknown) => error instanceof CheckpointError && error.code === 'io',
  );
  assert.deepEqual(
    readdirSync(folder).filter((name) => name.endsWith('.tmp')),
    [],
  );
  dispose(weights);
});

test('loadWeights lists mis-shaped keys (strict) and returns missing/unexpected ones (non-strict)', () => {
  const small = new WideResNet({ depth: 16, widenFactor: 1, numClasses: 10 });
  const path = join(folder, 'small.pth');
  saveWeights(path, small);
  const wide = new WideResNet({ depth: 16, widenFactor: 2, numClasses: 10 });
  assert.throws(
    () => loadWeights(wide, path),
    (error: unknown) =>
      error instanceof nn.StateDictError &&
      error.message.includes(path) &&
      error.message.includes('size mismatch for conv1.weight') === false &&
      error.message.includes('size mismatch for block1.layer.0.conv1.weight') &&
      error.missingKeys.includes('block1.layer.0.convShortcut.weight'),
  );
  const partial = new Map([['fc.bias', randn([10])]]);
  const partialPath = join(folder, 'partial.safetensors');
  saveWeights(partialPath, partial);
  const before = liveTensorCount();
  const result = loadWeights(small, partialPath, { strict: false });
  assert.equal(result.missingKeys.length, 81);
  assert.deepEqual(result.unexpectedKeys, []);
  assert.equal(liveTensorCount(), before);
  dispose(partial);
  small.dispose();
  wide.dispose();
});

// ---- PyTorch reads what we write ------------------------------------------------------------

const python = '/usr/bin/python3';

const PYTHON_CHECK = `
import json, struct, sys, torch
pth, safetensors = sys.argv[1], sys.argv[2]
loaded = torch.load(pth, weights_only=True)
state = loaded['state_dict']
out = {'epoch': loaded['epoch'], 'keys': list(state.keys()), 'tensors': {}}
for key, value in state.items():
    out['tensors'][key] = {'dtype': str(value.dtype), 'shape': list(value.shape),
                           'values': [float(v) for v in value.flatten().tolist()]}
# Our safetensors: parse the header by hand and compare with torch.load's tensors.
dtypes = {'F32': torch.float32, 'F64': torch.float64, 'F16': torch.float16, 'I64': torch.int64, 'I32': torch.int32,
          'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8, 'BOOL': torch.bool}
with open(safetensors, 'rb') as f:
    data = f.read()
n = struct.unpack('<Q', data[:8])[0]
header = json.loads(data[8:8 + n])
buffer = data[8 + n:]
same = True
for key, entry in header.items():
    if key == '__metadata__':
        continue
    begin, end = entry['data_offsets']
    t = torch.frombuffer(bytearray(buffer[begin:end]), dtype=dtypes[entry['dtype']]).reshape(entry['shape']) if end > begin \\
        else torch.empty(entry['shape'], dtype=dtypes[entry['dtype']])
    same = same and torch.equal(t, state[key])
out['safetensors_equal'] = same
print(json.dumps(out))
`;

test('torch.load (weights_only=True) opens our .pth with the same values', (context) => {
  const original = mixedStateDict();
  const model = new WideResNet({ depth: 16, widenFactor: 1, numClasses: 10 });
  for (const [key, value] of model.stateDict()) original.set(`wrn.${key}`, value);
  const pth = join(folder, 'for-python.pth');
  const safetensors = join(folder, 'for-python.safetensors');
  saveCheckpoint(pth, original, { epoch: 5 });
  saveSafetensors(safetensors, original);
  const run = spawnSync(python, ['-c', PYTHON_CHECK, pth, safetensors], {
    encoding: 'utf8',
    maxBuffer: 256 * 2 ** 20,
    timeout: 120_000,
  });
  // Probing `import torch` separately would cost a second interpreter start: skip here instead.
  if (run.error !== undefined || /No module named 'torch'/.test(run.stderr)) {
    context.skip(`${python} with torch is not available`);
    dispose(original);
    model.dispose();
    return;
  }
  assert.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout) as {
    epoch: number;
    keys: string[];
    tensors: Record<string, { dtype: string; shape: number[]; values: number[] }>;
    safetensors_equal: boolean;
  };
  assert.equal(result.epoch, 5);
  assert.deepEqual(result.keys, [...original.keys()]);
  assert.ok(result.safetensors_equal, 'python reads our safetensors as the same tensors');
  for (const [key, value] of original) {
    const theirs = result.tensors[key]!;
    assert.equal(theirs.dtype, `torch.${value.dtype === 'bool' ? 'bool' : value.dtype}`, key);
    assert.deepEqual(theirs.shape, value.shape, key);
    const ours = tidy(() =>
      value.dtype === 'int64' ? Array.from(value.toTypedArray(), Number) : [...value.double().toFloat64Array()],
    );
    assert.deepEqual(theirs.values, ours, key);
  }
  dispose(original);
  model.dispose();
});
