// PyTorch checkpoints (.pth/.pt/.pth.tar): reading the zip format (torch.save since 1.6)
// and the legacy format before it, and writing the zip format torch.load opens.
//
// Zip: `<prefix>/data.pkl` is a pickle whose tensors are `_rebuild_tensor_v2` calls on
// persistent ids ('storage', StorageClass, key, location, numel); each storage's raw bytes
// are the record `<prefix>/data/<key>`.
// Legacy: five things in a row — pickles of the magic number, the protocol version (1001)
// and a sys-info dict, the object pickle (persistent ids carry a sixth, view, field), the
// pickled list of storage keys; then for each key an int64 element count and the bytes.
import { tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import {
  type Checkpoint,
  type CheckpointSource,
  disposeOnError,
  plainMetadata,
  readSource,
  stripModulePrefix,
  writeFileAtomic,
} from './checkpoint.js';
import { CheckpointError, namingSource } from './errors.js';
import { describe, PickleGlobal, type PickleValue, PickleWriter, StorageRef, TensorRef, unpickle } from './pickle.js';
import {
  STORAGE_TYPE_OF,
  checkTensorGeometry,
  materializeTensor,
  numelOf,
  storageElementSize,
  storageLabel,
  tensorBytes,
} from './tensors.js';
import { looksLikeSafetensors } from './safetensors.js';
import { looksLikeZip, ZipReader, zipParts } from './zip.js';

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;
/** Top-level keys that hold the state dict in training checkpoints, in the order tried. */
const STATE_DICT_KEYS = ['state_dict', 'model', 'net', 'model_state_dict'];

/** Whether bytes start like a legacy checkpoint (a pickle, protocol 2+, holding an int). */
export function looksLikeLegacy(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x80 && bytes[1]! >= 2 && bytes[1]! <= 5;
}

/**
 * Reads a PyTorch checkpoint (zip or legacy format) into a state dict and plain metadata.
 * The state dict is the file's bare state dict, or the one under `state_dict` (or `model`,
 * `net`, `model_state_dict`); the other top-level entries become `metadata`. Pickles are
 * read as data only: any class or function outside tensors, storages and OrderedDict is
 * refused with a CheckpointError, never run.
 */
export function readCheckpoint(source: CheckpointSource): Checkpoint {
  const { bytes, name } = readSource(source);
  return namingSource(name, () => parseCheckpoint(bytes));
}

/** readCheckpoint on bytes, with messages that do not name a file. */
export function parseCheckpoint(bytes: Uint8Array): Checkpoint {
  if (looksLikeZip(bytes)) return readZipCheckpoint(bytes);
  if (looksLikeLegacy(bytes)) return readLegacyCheckpoint(bytes);
  throw new CheckpointError('bad-format', unknownFormatMessage(bytes));
}

export function unknownFormatMessage(bytes: Uint8Array): string {
  if (bytes.length === 0) return 'the file is empty';
  if (bytes.length > 262 && new TextDecoder().decode(bytes.subarray(257, 262)) === 'ustar') {
    return 'a tar-format checkpoint (PyTorch before 0.4) is not supported; re-save it with a recent PyTorch';
  }
  if (looksLikeSafetensors(bytes))
    return 'a safetensors file, not a PyTorch checkpoint: use readSafetensors or readWeights';
  return 'not a PyTorch checkpoint (no zip or pickle signature) nor a safetensors file';
}

// ---- storages ----------------------------------------------------------------------------

/** Storages declared by persistent ids, by key: one declaration per key. */
class StorageTable {
  readonly #storages = new Map<string, StorageRef>();

  constructor(readonly allowViews: boolean) {}

  get(key: string): StorageRef | undefined {
    return this.#storages.get(key);
  }

  /** torch's persistent_load: ('storage', StorageClass, key, location, numel[, view]). */
  load(id: PickleValue): StorageRef {
    if (!Array.isArray(id) || id.length === 0) {
      throw new CheckpointError('bad-pickle', `persistent id is a ${describe(id)}, not a storage tuple`);
    }
    const [kind, storageClass, rawKey, rawLocation, numel, view] = id;
    const typename = kind instanceof Uint8Array ? new TextDecoder().decode(kind) : kind;
    if (typename === 'module') {
      throw new CheckpointError(
        'refused-global',
        'the checkpoint pickles a whole nn.Module (persistent id "module"); only state dicts can be read safely',
      );
    }
    if (typename !== 'storage' || id.length < 5) {
      throw new CheckpointError('bad-pickle', `persistent id (${String(typename).slice(0, 40)}, ...) is not a storage`);
    }
    if (!(storageClass instanceof PickleGlobal) || !storageClass.name.endsWith('Storage')) {
      throw new CheckpointError('bad-pickle', `storage class is ${describe(storageClass!)}`);
    }
    const key = typeof rawKey === 'number' ? String(rawKey) : rawKey;
    const location = rawLocation instanceof Uint8Array ? new TextDecoder().decode(rawLocation) : rawLocation;
    if (typeof key !== 'string' || typeof location !== 'string') {
      throw new CheckpointError('bad-pickle', 'storage key and location must be strings');
    }
    if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
      throw new CheckpointError('bad-storage', `storage '${key}' declares ${String(numel)} elements`);
    }
    const elementSize = storageElementSize(storageClass.name);
    if (numel * elementSize > Number.MAX_SAFE_INTEGER) {
      throw new CheckpointError('too-large', `storage '${key}' declares ${numel} elements`);
    }
    let viewRange: { offset: number; numel: number } | null = null;
    if (id.length > 5 && view !== null && view !== undefined) {
      viewRange = this.#view(key, view);
    } else if (id.length > 6 || (id.length === 6 && !this.allowViews)) {
      throw new CheckpointError('bad-pickle', `storage persistent id has ${id.length} fields`);
    }
    const existing = this.#storages.get(key);
    if (existing !== undefined && (existing.storageType !== storageClass.name || existing.numel !== numel)) {
      throw new CheckpointError(
        'bad-storage',
        `storage '${key}' is declared twice, as ${storageLabel(existing)} and as ${storageClass.name} of ${numel}`,
      );
    }
    const root = existing ?? new StorageRef(key, storageClass.name, numel, location);
    this.#storages.set(key, root);
    return viewRange === null ? root : new StorageRef(key, root.storageType, root.numel, root.location, viewRange);
  }

  /** Legacy storage views: (view_key, offset, view_numel) into the root storage. */
  #view(key: string, view: PickleValue): { offset: number; numel: number } {
    if (!this.allowViews || !Array.isArray(view) || view.length !== 3) {
      throw new CheckpointError('bad-pickle', `storage '${key}' has a malformed view description`);
    }
    const [, offset, numel] = view;
    if (
      typeof offset !== 'number' ||
      typeof numel !== 'number' ||
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(numel) ||
      offset < 0 ||
      numel < 0
    ) {
      throw new CheckpointError('bad-storage', `storage '${key}' has a view with a bad offset or size`);
    }
    return { offset, numel };
  }
}

// ---- the object graph → state dict + metadata ---------------------------------------------

/** A dict holding tensors, or an empty one (a model without parameters). */
function isStateDict(value: PickleValue | undefined): value is Map<PickleValue, PickleValue> {
  if (!(value instanceof Map)) return false;
  if (value.size === 0) return true;
  for (const item of value.values()) if (item instanceof TensorRef) return true;
  return false;
}

/** Splits the unpickled object into tensor entries, plain metadata and notes. */
function splitCheckpoint(root: PickleValue): {
  tensors: Map<string, TensorRef>;
  metadata: Record<string, unknown>;
  omittedKeys: string[];
  notes: string[];
} {
  if (!(root instanceof Map)) {
    throw new CheckpointError('bad-state-dict', `the checkpoint holds a ${describe(root)}, not a dict`);
  }
  const notes: string[] = [];
  const holderKey = STATE_DICT_KEYS.find((key) => isStateDict(root.get(key)));
  // A bare state dict: the tensors are the top-level entries themselves.
  const stateDict = holderKey === undefined ? root : (root.get(holderKey) as Map<PickleValue, PickleValue>);
  const entries: [string, TensorRef][] = [];
  const skipped: string[] = [];
  const rest: [PickleValue, PickleValue][] = [];
  for (const [key, value] of stateDict) {
    if (value instanceof TensorRef && typeof key === 'string') entries.push([key, value]);
    else if (holderKey === undefined) rest.push([key, value]);
    else skipped.push(String(key));
  }
  if (holderKey !== undefined) {
    for (const [key, value] of root) if (key !== holderKey) rest.push([key, value]);
  } else if (entries.length === 0 && root.size > 0) {
    const keys = [...root.keys()].slice(0, 10).map((key) => (typeof key === 'string' ? key : describe(key)));
    throw new CheckpointError(
      'bad-state-dict',
      `no state dict: no tensors at the top level nor under ${STATE_DICT_KEYS.join('/')} (keys: ${keys.join(', ')})`,
    );
  }
  if (skipped.length > 0) notes.push(`non-tensor state dict entries skipped: ${skipped.join(', ')}`);
  const { metadata, omitted } = plainMetadata(rest);
  return { tensors: stripModulePrefix(entries), metadata, omittedKeys: omitted, notes };
}

/**
 * Reads every tensor of the state dict from its storage; frees them all if one fails.
 * Each tensor gets memory of its own, so tensors sharing a storage (or one tensor listed
 * under many keys) would multiply the file's size: the total is capped at twice the input
 * plus 64 MiB (tied weights fit; a crafted amplification does not).
 */
function buildStateDict(
  tensors: Map<string, TensorRef>,
  storageBytes: (storage: StorageRef) => Uint8Array,
  inputLength: number,
  notes: string[],
): Map<string, Tensor> {
  const stateDict = new Map<string, Tensor>();
  const widened: string[] = [];
  const byteBudget = 2 * inputLength + 2 ** 26;
  let bytesMade = 0;
  disposeOnError(stateDict, () => {
    for (const [key, ref] of tensors) {
      checkTensorGeometry(ref, ref.storage.numel);
      const isBFloat16 = ref.storage.storageType === 'BFloat16Storage';
      // bfloat16 is widened to 4-byte float32.
      bytesMade += numelOf(ref.size) * (isBFloat16 ? 4 : storageElementSize(ref.storage.storageType));
      if (bytesMade > byteBudget) {
        throw new CheckpointError(
          'too-large',
          `the tensors need over ${bytesMade} bytes from a ${inputLength}-byte file (stopped at '${key}'): refused as an amplification`,
        );
      }
      const bytes = storageBytes(ref.storage);
      stateDict.set(
        key,
        tidy(() => materializeTensor(ref, bytes, ref.storage.numel)),
      );
      if (isBFloat16) widened.push(key);
    }
  });
  if (widened.length > 0) notes.push(`bfloat16 tensors widened to float32 (exactly): ${widened.join(', ')}`);
  return stateDict;
}

function finish(
  format: 'zip' | 'legacy',
  root: PickleValue,
  inputLength: number,
  storageBytes: (storage: StorageRef) => Uint8Array,
): Checkpoint {
  const { tensors, metadata, omittedKeys, notes } = splitCheckpoint(root);
  const stateDict = buildStateDict(tensors, storageBytes, inputLength, notes);
  return { stateDict, metadata, format, omittedKeys, notes };
}

// ---- zip format ------------------------------------------------------------------------------

function readZipCheckpoint(bytes: Uint8Array): Checkpoint {
  const archive = new ZipReader(bytes);
  const first = archive.names[0];
  const slash = first === undefined ? -1 : first.indexOf('/');
  if (first === undefined || slash <= 0) {
    throw new CheckpointError('missing-record', 'a zip archive without a PyTorch folder (no <name>/data.pkl)');
  }
  const prefix = first.slice(0, slash);
  if (archive.has(`${prefix}/constants.pkl`) || archive.names.some((name) => name.startsWith(`${prefix}/code/`))) {
    throw new CheckpointError(
      'bad-format',
      'a TorchScript archive (torch.jit.save) holds code, not just weights; save a state_dict() with torch.save',
    );
  }
  if (archive.has(`${prefix}/byteorder`)) {
    const order = new TextDecoder().decode(archive.read(`${prefix}/byteorder`)).trim();
    if (order !== 'little') throw new CheckpointError('bad-format', `storages are stored ${order}-endian`);
  }
  const storages = new StorageTable(false);
  const pickleName = `${prefix}/data.pkl`;
  const { value } = unpickle(archive.read(pickleName), {
    name: pickleName,
    persistentLoad: (id) => storages.load(id),
  });
  const records = new Map<string, Uint8Array>();
  return finish('zip', value, bytes.length, (storage) => {
    let record = records.get(storage.key);
    if (record === undefined) {
      const recordName = `${prefix}/data/${storage.key}`;
      if (!archive.has(recordName)) {
        throw new CheckpointError(
          'missing-record',
          `the archive has no record '${recordName}' for ${storageLabel(storage)}`,
        );
      }
      record = archive.read(recordName);
      const expected = storage.numel * storageElementSize(storage.storageType);
      if (record.length !== expected) {
        throw new CheckpointError(
          'bad-storage',
          `record '${recordName}' holds ${record.length} bytes but ${storageLabel(storage)} needs ${expected}`,
        );
      }
      records.set(storage.key, record);
    }
    return record;
  });
}

// ---- legacy format ---------------------------------------------------------------------------

function readLegacyCheckpoint(bytes: Uint8Array): Checkpoint {
  const magic = unpickle(bytes, { name: 'magic number' });
  if (magic.value !== LEGACY_MAGIC) {
    throw new CheckpointError(
      'bad-magic',
      `not a PyTorch checkpoint: the first pickle holds ${describe(magic.value)} ${String(magic.value).slice(0, 40)}, not the magic number`,
    );
  }
  const protocol = unpickle(bytes, { start: magic.end, name: 'protocol version' });
  if (protocol.value !== LEGACY_PROTOCOL) {
    throw new CheckpointError('bad-magic', `unknown legacy protocol version ${String(protocol.value).slice(0, 40)}`);
  }
  const sysInfo = unpickle(bytes, { start: protocol.end, name: 'sys info' });
  if (sysInfo.value instanceof Map && sysInfo.value.get('little_endian') === false) {
    throw new CheckpointError('bad-format', 'the checkpoint was saved on a big-endian machine');
  }
  const storages = new StorageTable(true);
  const main = unpickle(bytes, {
    start: sysInfo.end,
    name: 'object pickle',
    persistentLoad: (id) => storages.load(id),
  });
  const keyList = unpickle(bytes, { start: main.end, name: 'storage key list' });
  if (!Array.isArray(keyList.value) || !keyList.value.every((key) => typeof key === 'string')) {
    throw new CheckpointError('bad-pickle', `the storage key list is a ${describe(keyList.value)}`);
  }
  // Each storage: its element count as int64, then its bytes. The sizes come from the pickle.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records = new Map<string, Uint8Array>();
  let at = keyList.end;
  for (const key of keyList.value as string[]) {
    const storage = storages.get(key);
    if (storage === undefined) {
      throw new CheckpointError('bad-storage', `storage '${key}' is listed but no tensor declares its type`);
    }
    if (at + 8 > bytes.length) {
      throw new CheckpointError('truncated', `the file ends before the size of storage '${key}' (at byte ${at})`);
    }
    const count = view.getBigInt64(at, true);
    if (count !== BigInt(storage.numel)) {
      throw new CheckpointError(
        'bad-storage',
        `storage '${key}' holds ${count} elements in the file but ${storage.numel} in the pickle`,
      );
    }
    const length = storage.numel * storageElementSize(storage.storageType);
    if (at + 8 + length > bytes.length) {
      throw new CheckpointError(
        'truncated',
        `storage '${key}' needs ${length} bytes at byte ${at + 8} but the file has ${bytes.length - at - 8} left (truncated)`,
      );
    }
    if (records.has(key)) throw new CheckpointError('bad-storage', `storage '${key}' is listed twice`);
    records.set(key, bytes.subarray(at + 8, at + 8 + length));
    at += 8 + length;
  }
  return finish('legacy', main.value, bytes.length, (storage) => {
    const record = records.get(storage.key);
    if (record === undefined) {
      throw new CheckpointError('missing-record', `the file holds no bytes for ${storageLabel(storage)}`);
    }
    return record;
  });
}

// ---- writing ---------------------------------------------------------------------------------

/** Writes one metadata value: ints, floats, strings, booleans, None, lists and dicts (nested). */
function writeMetadataValue(writer: PickleWriter, value: unknown, path: string, depth: number): void {
  if (depth > 100) throw new CheckpointError('bad-metadata', `metadata '${path}' is nested too deeply`);
  if (value === null || value === undefined) writer.none();
  else if (typeof value === 'boolean') writer.bool(value);
  else if (typeof value === 'bigint') writer.int(value);
  else if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) writer.int(value);
    else writer.float(value);
  } else if (typeof value === 'string') writer.string(value);
  else if (Array.isArray(value)) {
    writer.emptyList();
    if (value.length > 0) {
      writer.mark();
      value.forEach((item, i) => writeMetadataValue(writer, item, `${path}[${i}]`, depth + 1));
      writer.appends();
    }
  } else if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    writer.emptyDict();
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length > 0) {
      writer.mark();
      for (const [key, item] of entries) {
        writer.string(key);
        writeMetadataValue(writer, item, `${path}.${key}`, depth + 1);
      }
      writer.setItems();
    }
  } else {
    throw new CheckpointError(
      'bad-metadata',
      `metadata '${path}' is a ${typeof value === 'object' ? value.constructor.name : typeof value}; ` +
        'only numbers, strings, booleans, null, arrays and plain objects are written',
    );
  }
}

/**
 * The zip records of a checkpoint: a protocol-2 pickle of an OrderedDict of
 * `_rebuild_tensor_v2` calls (inside `{state_dict, ...metadata}` when there is metadata),
 * one storage per tensor, and the format version.
 */
export function checkpointRecords(
  stateDict: ReadonlyMap<string, Tensor>,
  metadata?: Record<string, unknown>,
): { name: string; data: Uint8Array }[] {
  const writer = new PickleWriter().proto(2);
  const hasMetadata = metadata !== undefined && Object.keys(metadata).length > 0;
  if (hasMetadata) {
    if ('state_dict' in metadata)
      throw new CheckpointError('bad-metadata', "metadata may not use the key 'state_dict'");
    writer.emptyDict().mark().string('state_dict');
  }
  writer.global('collections', 'OrderedDict').emptyTuple().reduce();
  const storages: Uint8Array[] = [];
  if (stateDict.size > 0) writer.mark();
  for (const [key, value] of stateDict) {
    const storageKey = String(storages.length);
    const storageType = STORAGE_TYPE_OF[value.dtype];
    const bytes = tensorBytes(value);
    storages.push(bytes);
    const shape = value.shape;
    const strides: number[] = [];
    let stride = 1;
    for (let dim = shape.length - 1; dim >= 0; dim--) {
      strides.unshift(stride);
      stride *= shape[dim]!;
    }
    writer.string(key).global('torch._utils', '_rebuild_tensor_v2').mark();
    writer
      .mark()
      .string('storage')
      .global('torch', storageType)
      .string(storageKey)
      .string('cpu')
      .int(value.numel)
      .tuple();
    writer.binPersId().int(0);
    writer.mark();
    for (const size of shape) writer.int(size);
    writer.tuple().mark();
    for (const size of strides) writer.int(size);
    writer.tuple().bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
  }
  if (stateDict.size > 0) writer.setItems();
  if (hasMetadata) {
    for (const [key, value] of Object.entries(metadata)) {
      writer.string(key);
      writeMetadataValue(writer, value, key, 1);
    }
    writer.setItems();
  }
  writer.stop();
  const storageKeys = storages.map((_, i) => String(i)).sort();
  return [
    { name: 'archive/data.pkl', data: writer.bytes() },
    { name: 'archive/byteorder', data: new TextEncoder().encode('little') },
    ...storageKeys.map((key) => ({ name: `archive/data/${key}`, data: storages[Number(key)]! })),
    { name: 'archive/version', data: new TextEncoder().encode('3\n') },
  ];
}

/**
 * Saves a state dict as a PyTorch zip checkpoint that `torch.load` opens (also with
 * `weights_only=True`): the bare OrderedDict, or `{state_dict, ...metadata}` when metadata
 * is given. Written to a temporary file and renamed, so `path` is never half-written.
 */
export function saveCheckpoint(
  path: string,
  stateDict: ReadonlyMap<string, Tensor>,
  metadata?: Record<string, unknown>,
): void {
  writeFileAtomic(path, zipParts(checkpointRecords(stateDict, metadata)));
}
