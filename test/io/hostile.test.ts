// Hostile and broken inputs: every one ends in a typed CheckpointError (never another
// exception, never code run, never an allocation the input cannot back), and nothing leaks.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { dispose, liveTensorCount, randn } from '../../src/index.js';
import { type CheckpointErrorCode, CheckpointError, readSafetensors, readWeights } from '../../src/io/index.js';
import { PickleWriter, unpickle } from '../../src/io/pickle.js';
import { safetensorsParts } from '../../src/io/safetensors.js';
import { zipBytes } from '../../src/io/zip.js';
import { sharedPath } from '../helpers/shared.js';
import { floats, le, raw, statePickle, zipCheckpoint, zipRecords } from './craft.js';

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((part) => [...part]));
}

/** Runs `read` and checks it throws a CheckpointError with `code` (and text in the message). */
function expectError(read: () => unknown, code: CheckpointErrorCode | CheckpointErrorCode[], text?: string): void {
  const codes = Array.isArray(code) ? code : [code];
  const before = liveTensorCount();
  assert.throws(read, (error: unknown) => {
    assert.ok(error instanceof CheckpointError, `expected a CheckpointError, got ${String(error)}`);
    assert.ok(codes.includes(error.code), `expected code ${codes.join('|')}, got ${error.code}: ${error.message}`);
    if (text !== undefined) assert.ok(error.message.includes(text), `'${text}' not in: ${error.message}`);
    return true;
  });
  assert.equal(liveTensorCount(), before, 'no tensor leaked');
}

/** A legacy checkpoint around `pickle`: magic, protocol, sys info, object, keys, storages. */
function legacyFile(objectPickle: Uint8Array, magic = 0x1950a86a20f9469cfc6cn, protocol = 1001): Uint8Array {
  const header = new PickleWriter().proto(2).int(magic).stop().bytes();
  const version = new PickleWriter().proto(2).int(protocol).stop().bytes();
  const sysInfo = new PickleWriter().proto(2).emptyDict().stop().bytes();
  const keys = new PickleWriter().proto(2).emptyList().stop().bytes();
  return concat([header, version, sysInfo, objectPickle, keys]);
}

// ---- code execution attempts ------------------------------------------------------------------

const marker = join(tmpdir(), `mcldef-pwned-${process.pid}`);

const EVIL_GLOBALS = [
  'os\nsystem',
  'posix\nsystem',
  'nt\nsystem',
  'builtins\neval',
  '__builtin__\nexec',
  'subprocess\nPopen',
  'torch\nload',
  'torch.nn.modules.conv\nConv2d',
  'numpy.core.multiarray\n_reconstruct',
  'collections\ndefaultdict',
];

for (const name of EVIL_GLOBALS) {
  const dotted = name.replace('\n', '.').replace('__builtin__', 'builtins');
  test(`GLOBAL ${dotted} is refused, by name, in zip and legacy checkpoints`, () => {
    // The classic payload: GLOBAL, a tuple of arguments, REDUCE.
    const pickle = raw(0x80, 2, 'c', name, '\n', 'X', le(`touch ${marker}`.length, 4), `touch ${marker}`, 0x85, 'R.');
    expectError(() => readWeights(zipCheckpoint(pickle)), 'refused-global', `'${dotted}'`);
    expectError(() => readWeights(legacyFile(pickle)), 'refused-global', `'${dotted}'`);
    assert.ok(!existsSync(marker), 'nothing ran');
  });
}

test('STACK_GLOBAL (protocol 4) is held to the same allow-list', () => {
  const pickle = raw(0x80, 4, 0x8c, 5, 'posix', 0x8c, 6, 'system', 0x93, 0x8c, 2, 'id', 0x85, 'R.');
  expectError(() => readWeights(zipCheckpoint(pickle)), 'refused-global', "'posix.system'");
  expectError(() => unpickle(raw(0x80, 4, 'K', 1, 'K', 2, 0x93, '.')), 'bad-pickle', 'STACK_GLOBAL');
});

test('REDUCE, NEWOBJ and BUILD only act on the allow-list', () => {
  // Calling a storage class, a string, an int.
  const storageCall = raw(0x80, 2, 'ctorch\nFloatStorage\n', ')R.');
  expectError(() => unpickle(storageCall), 'refused-opcode', 'torch.FloatStorage');
  expectError(() => unpickle(raw(0x80, 2, 'X', le(2, 4), 'id', ')R.')), 'refused-opcode', 'REDUCE calls str');
  expectError(() => unpickle(raw(0x80, 2, 'K', 5, ')R.')), 'refused-opcode');
  // NEWOBJ of a tensor rebuild function; BUILD on a list and on a tensor.
  expectError(() => unpickle(raw(0x80, 2, 'ctorch._utils\n_rebuild_tensor_v2\n', ')', 0x81, '.')), 'refused-opcode');
  expectError(() => unpickle(raw(0x80, 2, ']}b.')), 'refused-opcode', 'BUILD on a list');
  const tensorBuild = statePickle([{ numel: 4, size: [4], stride: [1] }]);
  // Replace the final SETITEMS/STOP: BUILD the last tensor with a dict state instead.
  const withBuild = concat([tensorBuild.subarray(0, tensorBuild.length - 2), raw('}b', 'u.')]);
  expectError(() => readWeights(zipCheckpoint(withBuild, { '0': floats(1, 2, 3, 4) })), 'refused-opcode', 'tensor');
  // BUILD with a dict state on an OrderedDict (how torch stores `_metadata`) is accepted.
  assert.deepEqual(unpickle(raw(0x80, 2, 'ccollections\nOrderedDict\n)R}b.')).value, new Map());
  // Tensor rebuild arguments are checked.
  const badRebuild = raw(0x80, 2, 'ctorch._utils\n_rebuild_tensor_v2\n', '(K', 1, 'K', 0, ')', ')', 0x89, '}t', 'R.');
  expectError(() => unpickle(badRebuild), 'bad-tensor', 'storage');
});

test('INST, OBJ, EXT1/2/4, out-of-band buffers and unknown opcodes are refused', () => {
  expectError(() => unpickle(raw('(ios\nsystem\n.')), 'refused-opcode', 'INST');
  expectError(() => unpickle(raw('(cos\nsystem\no.')), 'refused-global', 'os.system');
  expectError(() => unpickle(raw('(]o.')), 'refused-opcode', 'OBJ');
  expectError(() => unpickle(raw(0x80, 2, 0x82, 1, '.')), 'refused-opcode', 'EXT');
  expectError(() => unpickle(raw(0x80, 2, 0x83, 1, 0, '.')), 'refused-opcode', 'EXT');
  expectError(() => unpickle(raw(0x80, 2, 0x84, 1, 0, 0, 0, '.')), 'refused-opcode', 'EXT');
  expectError(() => unpickle(raw(0x80, 5, 0x97, '.')), 'refused-opcode', 'NEXT_BUFFER');
  expectError(() => unpickle(raw(0x80, 2, 0xff, '.')), 'bad-pickle', 'unknown opcode 0xff');
  expectError(() => unpickle(raw(0x80, 6, 'N.')), 'bad-pickle', 'protocol 6');
  // A persistent id outside a checkpoint, and torch's "whole module" persistent id.
  expectError(() => unpickle(raw(0x80, 2, 'N', 'Q.')), 'refused-opcode');
  const moduleId = raw(0x80, 2, '(X', le(6, 4), 'module', 'NNNtQ.');
  expectError(() => readWeights(legacyFile(moduleId)), 'refused-global', 'nn.Module');
});

test('malformed stacks: empty-stack pops, missing marks, bad memo keys, unhashable keys', () => {
  expectError(() => unpickle(raw('.')), 'bad-pickle', 'stack is empty');
  expectError(() => unpickle(raw('t.')), 'bad-pickle', 'MARK');
  expectError(() => unpickle(raw('h', 3, '.')), 'bad-pickle', 'memo');
  expectError(() => unpickle(raw('}]K', 1, 's.')), 'bad-pickle', 'unhashable');
  expectError(() => unpickle(raw('K', 1, 'K', 2, 'a.')), 'bad-pickle', 'APPEND on a int');
  expectError(() => unpickle(raw('(K', 1, 'd.')), 'bad-pickle', 'odd');
  expectError(() => unpickle(raw('Ifoo\n.')), 'bad-pickle');
  expectError(() => unpickle(raw('X', le(2, 4), 0xff, 0xfe, '.')), 'bad-pickle', 'UTF-8');
});

// ---- truncation ---------------------------------------------------------------------------------

const fixtures = sharedPath('fixtures/pytorch/');

test('truncated checkpoints fail with a typed error at every cut point tried', { skip: fixtures.skip }, () => {
  for (const name of ['wrn16_1.zip.pth', 'wrn16_1.legacy.pth.tar']) {
    const bytes = new Uint8Array(readFileSync(fixtures.path + name));
    // Dense cuts through the headers and pickle, sparse ones through the storages.
    const cuts = new Set<number>();
    for (let at = 0; at < 12_000; at += 61) cuts.add(at);
    for (let at = 12_000; at < bytes.length; at += 9_973) cuts.add(at);
    cuts.add(bytes.length - 1);
    for (const cut of cuts) {
      const code: CheckpointErrorCode[] = ['truncated', 'bad-format', 'bad-zip', 'missing-record'];
      expectError(() => readWeights(bytes.subarray(0, cut)), code);
    }
  }
});

test('a truncated data.pkl inside a valid archive says "truncated" at every cut point', { skip: fixtures.skip }, () => {
  const records = zipRecords(fixtures.path + 'wrn16_1.zip.pth');
  const pickle = records.find((record) => record.name.endsWith('/data.pkl'))!;
  for (let cut = 0; cut < pickle.data.length; cut += 31) {
    const archive = zipBytes(
      records.map((record) => (record === pickle ? { name: record.name, data: pickle.data.subarray(0, cut) } : record)),
    );
    expectError(() => readWeights(archive), 'truncated');
  }
});

// ---- format and archive damage --------------------------------------------------------------------

test('wrong magic number or protocol version, and unknown formats', () => {
  const pickle = statePickle([{ numel: 1, size: [1], stride: [1] }]);
  expectError(() => readWeights(legacyFile(pickle, 0x1950a86a20f9469cfc6dn)), 'bad-magic', 'magic number');
  expectError(() => readWeights(legacyFile(pickle, 0x1950a86a20f9469cfc6cn, 1002)), 'bad-magic', 'protocol');
  expectError(() => readWeights(new Uint8Array(0)), 'bad-format', 'empty');
  expectError(() => readWeights(raw('hello, not a checkpoint')), 'bad-format');
  expectError(() => readWeights(join(tmpdir(), 'mcldef-no-such-file.pth')), 'io', 'mcldef-no-such-file.pth');
});

test(
  'zip archives: missing data.pkl or storage record, wrong record size, bad CRC, lying directory',
  {
    skip: fixtures.skip,
  },
  () => {
    const records = zipRecords(fixtures.path + 'wrn16_1.zip.pth');
    const without = (suffix: string): Uint8Array => zipBytes(records.filter((record) => !record.name.endsWith(suffix)));
    expectError(() => readWeights(without('/data/5')), 'missing-record', 'data/5');
    expectError(() => readWeights(without('/data.pkl')), 'missing-record', 'data.pkl');
    const shortened = zipBytes(
      records.map((record) =>
        record.name.endsWith('/data/0') ? { name: record.name, data: record.data.subarray(0, 8) } : record,
      ),
    );
    expectError(() => readWeights(shortened), 'bad-storage', 'data/0');
    // Flip one byte of stored tensor data without fixing the CRC.
    const corrupt = new Uint8Array(readFileSync(fixtures.path + 'wrn16_1.zip.pth'));
    corrupt[20_000] = corrupt[20_000]! ^ 0x40;
    expectError(() => readWeights(corrupt), 'bad-zip', 'CRC');
    // An end-of-directory record claiming 65,535 entries in a tiny directory.
    const lying = zipCheckpoint(statePickle([]));
    new DataView(lying.buffer).setUint16(lying.length - 22 + 10, 0xffff, true);
    new DataView(lying.buffer).setUint16(lying.length - 22 + 8, 0xffff, true);
    expectError(() => readWeights(lying), 'bad-zip');
  },
);

test('a deflated record claiming 4 GB from a few bytes is refused before allocating', () => {
  const archive = zipCheckpoint(statePickle([]));
  const view = new DataView(archive.buffer);
  // Mark the first record (data.pkl) deflated with a huge original size in the directory.
  const directory = view.getUint32(archive.length - 22 + 16, true);
  view.setUint16(directory + 10, 8, true);
  view.setUint32(directory + 24, 0xfffffff0, true);
  expectError(() => readWeights(archive), 'bad-zip', 'claims');
});

// ---- tensor geometry ------------------------------------------------------------------------------

test('absurd shapes, offsets and strides are refused before any allocation', () => {
  const four = { '0': floats(1, 2, 3, 4) };
  const read = (spec: Parameters<typeof statePickle>[0][0], storages: Record<string, Uint8Array> = four): unknown =>
    readWeights(zipCheckpoint(statePickle([spec]), storages));
  expectError(() => read({ numel: 4, size: [1e6, 1e6, 1e6], stride: [1e12, 1e6, 1] }), 'bad-tensor', 'reaches');
  expectError(() => read({ numel: 4, offset: 100, size: [1], stride: [1] }), 'bad-tensor', 'offset 100');
  expectError(() => read({ numel: 4, offset: 1, size: [4], stride: [1] }), 'bad-tensor');
  expectError(() => read({ numel: 4, size: [2 ** 40], stride: [0] }), 'bad-tensor', 'absurd');
  expectError(
    () => read({ numel: 4, size: new Array<number>(65).fill(1), stride: new Array<number>(65).fill(1) }),
    'bad-tensor',
  );
  expectError(() => read({ numel: 4, size: [2, 2], stride: [2] }), 'bad-tensor', 'strides');
  expectError(() => read({ numel: 4, size: [-1], stride: [1] }), 'bad-tensor');
  // A storage declaring 10^15 elements over a 16-byte record: refused, nothing allocated.
  expectError(() => read({ numel: 1e15, size: [4], stride: [1] }), 'bad-storage', '16 bytes');
  expectError(
    () => read({ numel: 4, size: [4], stride: [1], storageType: 'ComplexFloatStorage' }, { '0': new Uint8Array(32) }),
    'unsupported-dtype',
  );
  // Two tensors on one storage, the second bad: the first is freed (expectError checks the count).
  const pickle = statePickle([
    { numel: 4, size: [4], stride: [1] },
    { numel: 4, size: [9], stride: [1], storageKey: '0' },
  ]);
  expectError(() => readWeights(zipCheckpoint(pickle, four)), 'bad-tensor');
  // Views and strides that do fit are read exactly.
  const transposed = readWeights(zipCheckpoint(statePickle([{ numel: 4, size: [2, 2], stride: [1, 2] }]), four));
  assert.deepEqual(transposed.stateDict.get('t0')!.toArray(), [
    [1, 3],
    [2, 4],
  ]);
  const window = readWeights(zipCheckpoint(statePickle([{ numel: 4, offset: 1, size: [2], stride: [2] }]), four));
  assert.deepEqual(window.stateDict.get('t0')!.toArray(), [2, 4]);
  dispose([transposed.stateDict, window.stateDict]);
});

test('one storage read into many tensors is capped (no amplification of the file size)', () => {
  const elements = 2 ** 20;
  const specs = Array.from({ length: 40 }, (_, i) => ({
    key: `copy${i}`,
    storageKey: '0',
    numel: elements,
    size: [elements],
    stride: [1],
  }));
  // 40 × 4 MiB of tensors from a 4 MiB file: refused before the cap, and nothing is kept.
  const archive = zipCheckpoint(statePickle(specs), { '0': new Uint8Array(4 * elements) });
  expectError(() => readWeights(archive), 'too-large', 'amplification');
});

/** A legacy checkpoint with one tensor on a view of a 4-float storage 'root'. */
function legacyViewFile(view: [number, number], size: number[], stride: number[]): Uint8Array {
  const writer = new PickleWriter().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce().mark();
  writer.string('v').global('torch._utils', '_rebuild_tensor_v2').mark();
  writer.mark().string('storage').global('torch', 'FloatStorage').string('root').string('cpu').int(4);
  writer.mark().string('view-key').int(view[0]).int(view[1]).tuple().tuple().binPersId().int(0).mark();
  for (const value of size) writer.int(value);
  writer.tuple().mark();
  for (const value of stride) writer.int(value);
  writer.tuple().bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
  writer.setItems().stop();
  const file = legacyFile(writer.bytes());
  // legacyFile ends with an empty key list: replace it with ['root'] and the storage.
  const keys = new PickleWriter().proto(2).emptyList().mark().string('root').appends().stop().bytes();
  const emptyKeys = new PickleWriter().proto(2).emptyList().stop().bytes();
  return concat([
    file.subarray(0, file.length - emptyKeys.length),
    keys,
    Uint8Array.from(le(4, 8)),
    floats(1, 2, 3, 4),
  ]);
}

test('legacy storage views are read, and bounded by their root storage', () => {
  const checkpoint = readWeights(legacyViewFile([1, 2], [2], [1]));
  assert.equal(checkpoint.format, 'legacy');
  assert.deepEqual(checkpoint.stateDict.get('v')!.toArray(), [2, 3]);
  dispose(checkpoint.stateDict);
  expectError(() => readWeights(legacyViewFile([1, 2], [3], [1])), 'bad-tensor', '2 elements');
  expectError(() => readWeights(legacyViewFile([3, 2], [1], [1])), 'bad-storage', 'view');
  // The same file cut anywhere inside the storage section is truncated.
  const whole = legacyViewFile([1, 2], [2], [1]);
  for (let cut = whole.length - 24; cut < whole.length; cut++) {
    expectError(() => readWeights(whole.subarray(0, cut)), 'truncated');
  }
});

// ---- declared lengths ------------------------------------------------------------------------------

test('huge declared lengths fail as truncated/too-large without allocating', () => {
  expectError(() => unpickle(raw('X', le(0xffffffff, 4), 'abc')), 'truncated', '4294967295');
  expectError(() => unpickle(raw(0x80, 4, 0x8e, le(2n ** 63n, 8), 'x')), 'truncated');
  expectError(() => unpickle(raw(0x80, 4, 0x8d, le(2n ** 40n, 8), 'x')), 'truncated');
  expectError(() => unpickle(raw(0x80, 4, 0x95, le(2n ** 60n, 8), 'N.')), 'truncated', 'FRAME');
  expectError(() => unpickle(raw(0x80, 2, 0x8b, le(0x7fffffff, 4))), 'too-large', 'LONG4');
  expectError(() => unpickle(raw('T', le(0xfffffff0, 4))), ['truncated', 'bad-pickle']);
  expectError(() => unpickle(raw('L', '9'.repeat(10_000), '\n.')), 'too-large');
  expectError(() => unpickle(raw('I123')), 'truncated');
});

test('safetensors: header lengths, offsets, sizes and overlaps are validated', () => {
  const weights = new Map([
    ['a', randn([2, 3])],
    ['b', randn([4])],
  ]);
  const good = concat(safetensorsParts(weights));
  const loaded = readWeights(good);
  assert.equal(loaded.format, 'safetensors');
  dispose([loaded.stateDict, weights]);
  const withHeader = (header: unknown, data = new Uint8Array(40)): Uint8Array => {
    const json = new TextEncoder().encode(JSON.stringify(header));
    return concat([Uint8Array.from(le(json.length, 8)), json, data]);
  };
  const huge = good.slice();
  new DataView(huge.buffer).setBigUint64(0, 2n ** 62n, true);
  expectError(() => readWeights(huge), 'bad-format');
  expectError(() => readSafetensors(huge), 'too-large');
  expectError(() => readWeights(concat([raw(le(2n ** 40n, 8)), raw('{}')])), 'bad-format');
  expectError(() => readWeights(good.subarray(0, good.length - 4)), 'truncated');
  expectError(
    () => readWeights(withHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } })),
    'bad-header',
    'cover',
  );
  expectError(() => readWeights(withHeader({ a: { dtype: 'F32', shape: [20], data_offsets: [0, 80] } })), 'truncated');
  expectError(
    () => readWeights(withHeader({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 40] } })),
    'bad-header',
    'needs 12',
  );
  expectError(
    () =>
      readWeights(
        withHeader({
          a: { dtype: 'F32', shape: [10], data_offsets: [0, 40] },
          b: { dtype: 'F32', shape: [5], data_offsets: [20, 40] },
        }),
      ),
    'bad-header',
    'overlap',
  );
  expectError(
    () => readWeights(withHeader({ a: { dtype: 'C64', shape: [5], data_offsets: [0, 40] } })),
    'unsupported-dtype',
  );
  expectError(
    () => readWeights(withHeader({ a: { dtype: 'F32', shape: [-10], data_offsets: [0, 40] } })),
    'bad-header',
  );
  expectError(() => readWeights(withHeader({ a: { dtype: 'F32', shape: [10], data_offsets: [40, 0] } })), 'bad-header');
  expectError(
    () => readWeights(withHeader({ __metadata__: { x: 1 } }, new Uint8Array(0))),
    'bad-header',
    '__metadata__',
  );
  const notJson = concat([raw(le(4, 8)), raw('{ab}')]);
  expectError(() => readWeights(notJson), 'bad-header', 'JSON');
});

// ---- nesting, cycles, shared references --------------------------------------------------------------

/** A checkpoint {state_dict: {w: tensor}, extra: <value written by `extra`>}. */
function withExtra(extra: Uint8Array): Uint8Array {
  const pickle = statePickle([{ key: 'w', numel: 4, size: [4], stride: [1] }], (writer) => writer.string('extra'));
  // Splice the raw extra-value opcodes in before the final SETITEMS + STOP.
  const spliced = concat([pickle.subarray(0, pickle.length - 2), extra, raw('u.')]);
  return zipCheckpoint(spliced, { '0': floats(1, 2, 3, 4) });
}

test('deep nesting is refused as too-deep; the unpickler itself never recurses', () => {
  const depth = 100_000;
  const nested = concat([new Uint8Array(depth).fill(0x5d), new Uint8Array(depth - 1).fill(0x61)]);
  const started = performance.now();
  const { value } = unpickle(concat([nested, raw('.')]));
  assert.ok(Array.isArray(value));
  expectError(() => readWeights(withExtra(nested)), 'too-deep');
  assert.ok(performance.now() - started < 5_000);
});

test('a list containing itself is refused; shared references (a "billion laughs") convert in linear time', () => {
  expectError(() => readWeights(withExtra(raw(']q', 0, 'h', 0, 'a'))), 'bad-pickle', 'cycle');
  // 60 levels of [x, x]: 2^60 leaves if copied, 60 objects when shared.
  const parts: Uint8Array[] = [raw('K', 1)];
  for (let level = 0; level < 60; level++) parts.push(raw('q', level, 'h', level, 0x86));
  const started = performance.now();
  const checkpoint = readWeights(withExtra(concat(parts)));
  assert.ok(performance.now() - started < 2_000);
  assert.ok(Array.isArray(checkpoint.metadata.extra));
  dispose(checkpoint.stateDict);
});
