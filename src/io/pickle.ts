// A data-only pickle reader (and a small writer) for what PyTorch checkpoints hold.
//
// Python's unpickler imports whatever module/name a GLOBAL opcode names and calls it, which
// is how a checkpoint can run `os.system`. This reader never imports or calls anything: a
// GLOBAL resolves only against a fixed allow-list (OrderedDict, set, torch's tensor rebuild
// functions and storage classes) into an inert marker, and REDUCE/NEWOBJ/BUILD only act on
// those markers, building plain JS values. Everything else throws a CheckpointError that
// names what was refused. The reader is a loop over the input (no recursion), every length
// is checked against the bytes that remain before anything is sliced or allocated, and the
// stack and memo can only grow by one entry per opcode, so memory is bounded by the input.
import { CheckpointError } from './errors.js';

/** A global from the allow-list: a name, never an imported object. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}

  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A torch storage as a checkpoint's persistent id declares it: where its bytes live and what they are. */
export class StorageRef {
  constructor(
    /** The record key: `data/<key>` in a zip archive, the storage key in a legacy file. */
    readonly key: string,
    /** The pickle name of the storage class, e.g. 'FloatStorage'. */
    readonly storageType: string,
    /** Elements in the whole (root) storage. */
    readonly numel: number,
    /** Where it was saved from ('cpu', 'cuda:0'); everything is loaded to the CPU. */
    readonly location: string,
    /** Legacy storage views: the element range of the root storage this storage covers. */
    readonly view: { readonly offset: number; readonly numel: number } | null = null,
  ) {}
}

/** A tensor as `_rebuild_tensor_v2` would make it: a strided window on a storage (not yet read). */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly storageOffset: number,
    readonly size: readonly number[],
    readonly stride: readonly number[],
    readonly requiresGrad: boolean,
    /** Saved as an nn.Parameter. */
    readonly isParameter: boolean,
  ) {}
}

/** The values a pickle can produce here. Tuples are frozen arrays; dicts and OrderedDicts are Maps. */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | Set<PickleValue>
  | PickleGlobal
  | StorageRef
  | TensorRef;

export interface UnpickleOptions {
  /** Where the pickle starts in `bytes` (legacy checkpoints hold several in a row). */
  start?: number;
  /** Resolves BINPERSID/PERSID ids (torch's storages); without it they are refused. */
  persistentLoad?: (id: PickleValue) => PickleValue;
  /** Names the stream in messages, e.g. 'data.pkl'. */
  name?: string;
}

/** Most dimensions a tensor may declare (PyTorch itself caps at 64). */
export const MAX_TENSOR_DIMS = 64;
/** Longest text line (protocol-0 numbers, global names) and integer (LONG1/LONG4) accepted. */
const MAX_TEXT_LINE = 4096;
const MAX_LONG_BYTES = 4096;
const HIGHEST_PROTOCOL = 5;

const STORAGE_TYPES = new Set([
  'FloatStorage',
  'DoubleStorage',
  'HalfStorage',
  'BFloat16Storage',
  'LongStorage',
  'IntStorage',
  'ShortStorage',
  'CharStorage',
  'ByteStorage',
  'BoolStorage',
  'ComplexFloatStorage',
  'ComplexDoubleStorage',
  'QInt8Storage',
  'QUInt8Storage',
  'QInt32Storage',
  'QUInt4x2Storage',
  'QUInt2x4Storage',
  'UntypedStorage',
]);

const ALLOWED_GLOBALS = new Set([
  'collections.OrderedDict',
  'builtins.set',
  'builtins.frozenset',
  '_codecs.encode',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
]);

/** Python 2 module names that Python 3's unpickler maps (fix_imports). */
const PYTHON2_MODULES: Readonly<Record<string, string>> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

/** Whether a global is in the allow-list (storage classes of `torch` and, in old files, `torch.cuda`). */
export function isAllowedGlobal(module: string, name: string): boolean {
  if ((module === 'torch' || module === 'torch.cuda') && STORAGE_TYPES.has(name)) return true;
  return ALLOWED_GLOBALS.has(`${module}.${name}`);
}

/** A short description of a value's Python type for error messages. */
export function describe(value: PickleValue): string {
  if (value === null) return 'None';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  if (typeof value === 'bigint') return 'int';
  if (typeof value === 'string') return 'str';
  if (value instanceof Uint8Array) return 'bytes';
  if (Array.isArray(value)) return Object.isFrozen(value) ? 'tuple' : 'list';
  if (value instanceof Map) return 'dict';
  if (value instanceof Set) return 'set';
  if (value instanceof PickleGlobal) return value.qualifiedName;
  if (value instanceof StorageRef) return `storage (${value.storageType})`;
  return 'tensor';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isHashable(value: PickleValue): boolean {
  if (Array.isArray(value)) return Object.isFrozen(value) && value.every(isHashable);
  return !(value instanceof Map || value instanceof Set);
}

function tuple(items: PickleValue[]): PickleValue[] {
  return Object.freeze(items) as PickleValue[];
}

/** Two's-complement little-endian bytes as a number when it is safe, else a bigint. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]!);
  if ((bytes[bytes.length - 1]! & 0x80) !== 0) value -= 1n << BigInt(8 * bytes.length);
  return normalizeInt(value);
}

function normalizeInt(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

/** Reads one pickle; throws CheckpointError for anything malformed or not allowed. */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions = {}): { value: PickleValue; end: number } {
  return new Unpickler(bytes, options).run();
}

class Unpickler {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #name: string;
  readonly #persistentLoad: ((id: PickleValue) => PickleValue) | undefined;
  #pos: number;
  /** Where the opcode being run starts, for messages. */
  #opStart = 0;
  #stack: PickleValue[] = [];
  readonly #marks: number[] = [];
  readonly #memo = new Map<number, PickleValue>();

  constructor(bytes: Uint8Array, options: UnpickleOptions) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#pos = options.start ?? 0;
    this.#name = options.name ?? 'pickle';
    this.#persistentLoad = options.persistentLoad;
  }

  // ---- errors and raw reads ---------------------------------------------------------

  #fail(code: 'bad-pickle' | 'refused-global' | 'refused-opcode' | 'too-large' | 'bad-tensor', problem: string): never {
    throw new CheckpointError(code, `${this.#name}: ${problem} (at byte ${this.#opStart})`);
  }

  #need(count: number, what: string): void {
    const remaining = this.#bytes.length - this.#pos;
    if (count > remaining) {
      throw new CheckpointError(
        'truncated',
        `${this.#name}: ${what} needs ${count} bytes at byte ${this.#pos} but the stream has ${remaining} left (truncated or corrupt)`,
      );
    }
  }

  #u8(): number {
    this.#need(1, 'an opcode argument');
    return this.#bytes[this.#pos++]!;
  }

  #u16(): number {
    this.#need(2, 'a 2-byte argument');
    const value = this.#view.getUint16(this.#pos, true);
    this.#pos += 2;
    return value;
  }

  #u32(): number {
    this.#need(4, 'a 4-byte argument');
    const value = this.#view.getUint32(this.#pos, true);
    this.#pos += 4;
    return value;
  }

  #i32(): number {
    this.#need(4, 'a 4-byte argument');
    const value = this.#view.getInt32(this.#pos, true);
    this.#pos += 4;
    return value;
  }

  /** An 8-byte length; anything past 2^53 cannot fit in the input anyway. */
  #u64(): number {
    this.#need(8, 'an 8-byte length');
    const value = this.#view.getBigUint64(this.#pos, true);
    this.#pos += 8;
    return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
  }

  /** `count` bytes (a view, not a copy), after checking they exist. */
  #take(count: number, what: string): Uint8Array {
    if (count < 0) this.#fail('bad-pickle', `negative length ${count} for ${what}`);
    this.#need(count, what);
    const slice = this.#bytes.subarray(this.#pos, this.#pos + count);
    this.#pos += count;
    return slice;
  }

  /** A protocol-0 text argument up to (not including) the newline. */
  #line(what: string): string {
    const limit = Math.min(this.#bytes.length, this.#pos + MAX_TEXT_LINE + 1);
    let end = this.#pos;
    while (end < limit && this.#bytes[end] !== 0x0a) end++;
    if (end === limit) {
      if (limit === this.#bytes.length) this.#need(end - this.#pos + 1, what);
      this.#fail('too-large', `${what} is longer than ${MAX_TEXT_LINE} characters`);
    }
    let text = '';
    for (let i = this.#pos; i < end; i++) text += String.fromCharCode(this.#bytes[i]!);
    this.#pos = end + 1;
    return text;
  }

  #text(bytes: Uint8Array, what: string): string {
    try {
      return utf8.decode(bytes);
    } catch {
      this.#fail('bad-pickle', `${what} is not valid UTF-8`);
    }
  }

  // ---- stack ----------------------------------------------------------------------------

  #push(value: PickleValue): void {
    this.#stack.push(value);
  }

  #pop(what: string): PickleValue {
    const floor = this.#marks.length > 0 ? this.#marks[this.#marks.length - 1]! : 0;
    if (this.#stack.length <= floor) this.#fail('bad-pickle', `${what}: the stack is empty`);
    return this.#stack.pop()!;
  }

  #top(what: string): PickleValue {
    const floor = this.#marks.length > 0 ? this.#marks[this.#marks.length - 1]! : 0;
    if (this.#stack.length <= floor) this.#fail('bad-pickle', `${what}: the stack is empty`);
    return this.#stack[this.#stack.length - 1]!;
  }

  /** The items pushed since the last MARK, removing them and the mark. */
  #popMark(what: string): PickleValue[] {
    const mark = this.#marks.pop();
    if (mark === undefined) this.#fail('bad-pickle', `${what} without a MARK`);
    return this.#stack.splice(mark);
  }

  #memoGet(index: number): PickleValue {
    const value = this.#memo.get(index);
    if (value === undefined) this.#fail('bad-pickle', `memo entry ${index} was never stored`);
    return value;
  }

  #memoPut(index: number): void {
    this.#memo.set(index, this.#top('PUT'));
  }

  // ---- the loop -----------------------------------------------------------------------

  run(): { value: PickleValue; end: number } {
    for (;;) {
      this.#opStart = this.#pos;
      if (this.#pos >= this.#bytes.length) {
        throw new CheckpointError(
          'truncated',
          `${this.#name}: the pickle ends at byte ${this.#pos} without a STOP opcode (truncated)`,
        );
      }
      const opcode = this.#bytes[this.#pos++]!;
      if (opcode === 0x2e /* STOP */) {
        const value = this.#pop('STOP');
        return { value, end: this.#pos };
      }
      this.#step(opcode);
    }
  }

  #step(opcode: number): void {
    switch (opcode) {
      // -- framing and protocol --
      case 0x80: {
        const protocol = this.#u8();
        if (protocol > HIGHEST_PROTOCOL) this.#fail('bad-pickle', `unsupported pickle protocol ${protocol}`);
        return;
      }
      case 0x95: {
        // FRAME: a length hint for buffered reading; the bytes follow inline.
        const length = this.#u64();
        this.#need(length, 'a FRAME');
        return;
      }
      // -- constants and numbers --
      case 0x4e: // NONE
        return this.#push(null);
      case 0x88: // NEWTRUE
        return this.#push(true);
      case 0x89: // NEWFALSE
        return this.#push(false);
      case 0x4b: // BININT1
        return this.#push(this.#u8());
      case 0x4d: // BININT2
        return this.#push(this.#u16());
      case 0x4a: // BININT
        return this.#push(this.#i32());
      case 0x8a: // LONG1
        return this.#push(decodeLong(this.#take(this.#u8(), 'a LONG1')));
      case 0x8b: {
        // LONG4
        const length = this.#i32();
        if (length > MAX_LONG_BYTES) this.#fail('too-large', `a LONG4 integer of ${length} bytes`);
        return this.#push(decodeLong(this.#take(length, 'a LONG4')));
      }
      case 0x47: {
        // BINFLOAT: big-endian double.
        this.#need(8, 'a BINFLOAT');
        const value = this.#view.getFloat64(this.#pos, false);
        this.#pos += 8;
        return this.#push(value);
      }
      case 0x49: // INT (text)
        return this.#push(this.#parseTextInt(this.#line('an INT'), true));
      case 0x4c: // LONG (text)
        return this.#push(this.#parseTextInt(this.#line('a LONG').replace(/L$/, ''), false));
      case 0x46: // FLOAT (text)
        return this.#push(this.#parseTextFloat(this.#line('a FLOAT')));
      // -- strings and bytes --
      case 0x58: // BINUNICODE
        return this.#push(this.#text(this.#take(this.#u32(), 'a BINUNICODE'), 'a BINUNICODE string'));
      case 0x8c: // SHORT_BINUNICODE
        return this.#push(this.#text(this.#take(this.#u8(), 'a SHORT_BINUNICODE'), 'a SHORT_BINUNICODE string'));
      case 0x8d: // BINUNICODE8
        return this.#push(this.#text(this.#take(this.#u64(), 'a BINUNICODE8'), 'a BINUNICODE8 string'));
      case 0x54: {
        // BINSTRING (Python 2 str): torch.load decodes these as UTF-8.
        const length = this.#i32();
        return this.#push(this.#text(this.#take(length, 'a BINSTRING'), 'a BINSTRING'));
      }
      case 0x55: // SHORT_BINSTRING
        return this.#push(this.#text(this.#take(this.#u8(), 'a SHORT_BINSTRING'), 'a SHORT_BINSTRING'));
      case 0x53: // STRING (text, quoted with escapes)
        return this.#push(this.#text(this.#unescapeString(this.#line('a STRING')), 'a STRING'));
      case 0x56: // UNICODE (text, raw-unicode-escape)
        return this.#push(this.#unescapeUnicode(this.#line('a UNICODE')));
      case 0x43: // SHORT_BINBYTES
        return this.#push(this.#take(this.#u8(), 'a SHORT_BINBYTES').slice());
      case 0x42: // BINBYTES
        return this.#push(this.#take(this.#u32(), 'a BINBYTES').slice());
      case 0x8e: // BINBYTES8
        return this.#push(this.#take(this.#u64(), 'a BINBYTES8').slice());
      case 0x96: // BYTEARRAY8
        return this.#push(this.#take(this.#u64(), 'a BYTEARRAY8').slice());
      case 0x97: // NEXT_BUFFER
        return this.#fail('refused-opcode', 'NEXT_BUFFER (out-of-band buffers are not part of a checkpoint)');
      case 0x98: // READONLY_BUFFER: only marks the top buffer read-only.
        this.#top('READONLY_BUFFER');
        return;
      // -- containers --
      case 0x28: // MARK
        this.#marks.push(this.#stack.length);
        return;
      case 0x29: // EMPTY_TUPLE
        return this.#push(tuple([]));
      case 0x74: // TUPLE
        return this.#push(tuple(this.#popMark('TUPLE')));
      case 0x85: // TUPLE1
        return this.#push(tuple([this.#pop('TUPLE1')]));
      case 0x86: {
        // TUPLE2
        const second = this.#pop('TUPLE2');
        return this.#push(tuple([this.#pop('TUPLE2'), second]));
      }
      case 0x87: {
        // TUPLE3
        const third = this.#pop('TUPLE3');
        const second = this.#pop('TUPLE3');
        return this.#push(tuple([this.#pop('TUPLE3'), second, third]));
      }
      case 0x5d: // EMPTY_LIST
        return this.#push([]);
      case 0x6c: // LIST
        return this.#push(this.#popMark('LIST'));
      case 0x61: {
        // APPEND
        const item = this.#pop('APPEND');
        this.#list(this.#top('APPEND'), 'APPEND').push(item);
        return;
      }
      case 0x65: {
        // APPENDS
        const items = this.#popMark('APPENDS');
        const list = this.#list(this.#top('APPENDS'), 'APPENDS');
        for (const item of items) list.push(item);
        return;
      }
      case 0x7d: // EMPTY_DICT
        return this.#push(new Map());
      case 0x64: {
        // DICT
        const dict = new Map<PickleValue, PickleValue>();
        this.#setItems(dict, this.#popMark('DICT'), 'DICT');
        return this.#push(dict);
      }
      case 0x73: {
        // SETITEM
        const value = this.#pop('SETITEM');
        const key = this.#pop('SETITEM');
        this.#setItems(this.#dict(this.#top('SETITEM'), 'SETITEM'), [key, value], 'SETITEM');
        return;
      }
      case 0x75: {
        // SETITEMS
        const items = this.#popMark('SETITEMS');
        this.#setItems(this.#dict(this.#top('SETITEMS'), 'SETITEMS'), items, 'SETITEMS');
        return;
      }
      case 0x8f: // EMPTY_SET
        return this.#push(new Set());
      case 0x90: {
        // ADDITEMS
        const items = this.#popMark('ADDITEMS');
        const set = this.#top('ADDITEMS');
        if (!(set instanceof Set)) this.#fail('bad-pickle', `ADDITEMS on a ${describe(set)}`);
        for (const item of items) set.add(this.#hashable(item, 'ADDITEMS'));
        return;
      }
      case 0x91: // FROZENSET
        return this.#push(new Set(this.#popMark('FROZENSET').map((item) => this.#hashable(item, 'FROZENSET'))));
      // -- stack manipulation --
      case 0x30: // POP
        if (this.#stack.length > (this.#marks[this.#marks.length - 1] ?? 0)) this.#stack.pop();
        else this.#popMark('POP');
        return;
      case 0x31: // POP_MARK
        this.#popMark('POP_MARK');
        return;
      case 0x32: // DUP
        return this.#push(this.#top('DUP'));
      // -- memo --
      case 0x67: // GET
        return this.#push(this.#memoGet(this.#parseIndex(this.#line('a GET index'))));
      case 0x68: // BINGET
        return this.#push(this.#memoGet(this.#u8()));
      case 0x6a: // LONG_BINGET
        return this.#push(this.#memoGet(this.#u32()));
      case 0x70: // PUT
        return this.#memoPut(this.#parseIndex(this.#line('a PUT index')));
      case 0x71: // BINPUT
        return this.#memoPut(this.#u8());
      case 0x72: // LONG_BINPUT
        return this.#memoPut(this.#u32());
      case 0x94: // MEMOIZE
        return this.#memoPut(this.#memo.size);
      // -- globals and calls: only the allow-list, and never run --
      case 0x63: {
        // GLOBAL
        const module = this.#line('a GLOBAL module');
        const name = this.#line('a GLOBAL name');
        return this.#push(this.#global(module, name));
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = this.#pop('STACK_GLOBAL');
        const module = this.#pop('STACK_GLOBAL');
        if (typeof module !== 'string' || typeof name !== 'string') {
          this.#fail('bad-pickle', `STACK_GLOBAL needs two strings, got ${describe(module)} and ${describe(name)}`);
        }
        return this.#push(this.#global(module, name));
      }
      case 0x52: {
        // REDUCE
        const args = this.#pop('REDUCE');
        const callable = this.#pop('REDUCE');
        return this.#push(this.#call(callable, args, 'REDUCE'));
      }
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args); only for the allowed container classes.
        const args = this.#pop('NEWOBJ');
        const cls = this.#pop('NEWOBJ');
        return this.#push(this.#newObject(cls, args, 'NEWOBJ'));
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = this.#pop('NEWOBJ_EX');
        const args = this.#pop('NEWOBJ_EX');
        const cls = this.#pop('NEWOBJ_EX');
        if (!(kwargs instanceof Map) || kwargs.size > 0)
          this.#fail('refused-opcode', 'NEWOBJ_EX with keyword arguments');
        return this.#push(this.#newObject(cls, args, 'NEWOBJ_EX'));
      }
      case 0x62: {
        // BUILD
        const state = this.#pop('BUILD');
        this.#build(this.#top('BUILD'), state);
        return;
      }
      case 0x51: {
        // BINPERSID
        const id = this.#pop('BINPERSID');
        return this.#push(this.#persistent(id));
      }
      case 0x50: // PERSID
        return this.#push(this.#persistent(this.#line('a PERSID id')));
      case 0x69: // INST
        return this.#fail('refused-opcode', 'INST (instantiates an arbitrary class)');
      case 0x6f: // OBJ
        return this.#fail('refused-opcode', 'OBJ (instantiates an arbitrary class)');
      case 0x82:
      case 0x83:
      case 0x84:
        return this.#fail('refused-opcode', 'EXT1/EXT2/EXT4 (the copyreg extension registry)');
      default:
        return this.#fail('bad-pickle', `unknown opcode 0x${opcode.toString(16).padStart(2, '0')}`);
    }
  }

  // ---- helpers for opcodes -----------------------------------------------------------

  #list(target: PickleValue, what: string): PickleValue[] {
    if (!Array.isArray(target) || Object.isFrozen(target)) this.#fail('bad-pickle', `${what} on a ${describe(target)}`);
    return target;
  }

  #dict(target: PickleValue, what: string): Map<PickleValue, PickleValue> {
    if (!(target instanceof Map)) this.#fail('bad-pickle', `${what} on a ${describe(target)}`);
    return target;
  }

  #hashable(key: PickleValue, what: string): PickleValue {
    if (!isHashable(key)) this.#fail('bad-pickle', `${what}: unhashable key of type ${describe(key)}`);
    return key;
  }

  #setItems(dict: Map<PickleValue, PickleValue>, items: PickleValue[], what: string): void {
    if (items.length % 2 !== 0) this.#fail('bad-pickle', `${what} with an odd number of items`);
    for (let i = 0; i < items.length; i += 2) dict.set(this.#hashable(items[i]!, what), items[i + 1]!);
  }

  #parseIndex(text: string): number {
    if (!/^\d{1,15}$/.test(text)) this.#fail('bad-pickle', `bad memo index '${text.slice(0, 40)}'`);
    return Number(text);
  }

  #parseTextInt(text: string, isInt: boolean): number | bigint | boolean {
    if (isInt && text === '01') return true;
    if (isInt && text === '00') return false;
    if (!/^[+-]?\d+$/.test(text)) this.#fail('bad-pickle', `bad integer literal '${text.slice(0, 40)}'`);
    return normalizeInt(BigInt(text));
  }

  #parseTextFloat(text: string): number {
    const lower = text.trim().toLowerCase();
    if (lower === 'nan') return NaN;
    if (lower === 'inf' || lower === '+inf') return Infinity;
    if (lower === '-inf') return -Infinity;
    if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(lower)) {
      this.#fail('bad-pickle', `bad float literal '${text.slice(0, 40)}'`);
    }
    return Number(lower);
  }

  /** Python 2 `repr(str)` text: quoted, with backslash escapes; gives the raw bytes. */
  #unescapeString(text: string): Uint8Array {
    const quote = text[0];
    if (text.length < 2 || (quote !== "'" && quote !== '"') || text[text.length - 1] !== quote) {
      this.#fail('bad-pickle', 'STRING argument is not quoted');
    }
    const body = text.slice(1, -1);
    const out: number[] = [];
    const simple: Record<string, number> = { n: 10, r: 13, t: 9, a: 7, b: 8, f: 12, v: 11, '\\': 92, "'": 39, '"': 34 };
    for (let i = 0; i < body.length; i++) {
      const char = body.charCodeAt(i);
      if (char !== 92) {
        out.push(char & 0xff);
        continue;
      }
      const next = body[++i];
      if (next === undefined) this.#fail('bad-pickle', 'STRING ends in a backslash');
      if (next in simple) out.push(simple[next]!);
      else if (next === 'x' && /^[0-9a-fA-F]{2}$/.test(body.slice(i + 1, i + 3))) {
        out.push(parseInt(body.slice(i + 1, i + 3), 16));
        i += 2;
      } else if (/[0-7]/.test(next)) {
        const digits = /^[0-7]{1,3}/.exec(body.slice(i))![0];
        out.push(parseInt(digits, 8) & 0xff);
        i += digits.length - 1;
      } else {
        out.push(92, next.charCodeAt(0) & 0xff);
      }
    }
    return Uint8Array.from(out);
  }

  /** raw-unicode-escape: bytes are Latin-1 code points except \uXXXX and \UXXXXXXXX. */
  #unescapeUnicode(text: string): string {
    return text.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_match, short?: string, long?: string) => {
      const codePoint = parseInt(short ?? long ?? '0', 16);
      if (codePoint > 0x10ffff) this.#fail('bad-pickle', `UNICODE escape beyond U+10FFFF`);
      return String.fromCodePoint(codePoint);
    });
  }

  #global(rawModule: string, name: string): PickleGlobal {
    const module = PYTHON2_MODULES[rawModule] ?? rawModule;
    if (!isAllowedGlobal(module, name)) {
      this.#fail(
        'refused-global',
        `refused global '${module}.${name}': a checkpoint may only reference tensors, storages and ` +
          'OrderedDict (a pickled model object or code cannot be loaded safely; save its state_dict() instead)',
      );
    }
    return new PickleGlobal(module, name);
  }

  #persistent(id: PickleValue): PickleValue {
    if (this.#persistentLoad === undefined) this.#fail('refused-opcode', 'a persistent id outside a checkpoint');
    return this.#persistentLoad(id);
  }

  #arguments(args: PickleValue, what: string): PickleValue[] {
    if (!Array.isArray(args) || !Object.isFrozen(args)) {
      this.#fail('bad-pickle', `${what} arguments must be a tuple, got ${describe(args)}`);
    }
    return args;
  }

  #call(callable: PickleValue, rawArgs: PickleValue, what: string): PickleValue {
    if (!(callable instanceof PickleGlobal) || callable.name.endsWith('Storage')) {
      this.#fail('refused-opcode', `${what} calls ${describe(callable)}, which this reader does not call`);
    }
    const args = this.#arguments(rawArgs, what);
    switch (callable.qualifiedName) {
      case 'collections.OrderedDict':
        return this.#orderedDict(args);
      case 'builtins.set':
      case 'builtins.frozenset':
        return this.#set(args, callable.qualifiedName);
      case '_codecs.encode':
        return this.#encodeLatin1(args);
      case 'torch._utils._rebuild_tensor':
        if (args.length !== 4) this.#fail('bad-tensor', `_rebuild_tensor takes 4 arguments, got ${args.length}`);
        return this.#tensor(args, false);
      case 'torch._utils._rebuild_tensor_v2':
        if (args.length !== 6 && args.length !== 7) {
          this.#fail('bad-tensor', `_rebuild_tensor_v2 takes 6 or 7 arguments, got ${args.length}`);
        }
        return this.#tensor(args, this.#bool(args[4]!, 'requires_grad'));
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state': {
        const expected = callable.name === '_rebuild_parameter' ? 3 : 4;
        if (args.length !== expected) {
          this.#fail('bad-tensor', `${callable.name} takes ${expected} arguments, got ${args.length}`);
        }
        const data = args[0]!;
        if (!(data instanceof TensorRef)) this.#fail('bad-tensor', `${callable.name} of a ${describe(data)}`);
        const requiresGrad = this.#bool(args[1]!, 'requires_grad');
        // Parameter state (Python attributes set on the parameter) carries no weights.
        return new TensorRef(data.storage, data.storageOffset, data.size, data.stride, requiresGrad, true);
      }
      default:
        return this.#fail('refused-opcode', `${what} calls ${callable.qualifiedName}`);
    }
  }

  #newObject(cls: PickleValue, args: PickleValue, what: string): PickleValue {
    const allowed = ['collections.OrderedDict', 'builtins.set', 'builtins.frozenset'];
    if (!(cls instanceof PickleGlobal) || !allowed.includes(cls.qualifiedName)) {
      this.#fail('refused-opcode', `${what} of ${describe(cls)}`);
    }
    return this.#call(cls, args, what);
  }

  /** BUILD sets Python attributes; only a dict's (OrderedDict._metadata) are accepted, and dropped. */
  #build(target: PickleValue, state: PickleValue): void {
    if (!(target instanceof Map)) this.#fail('refused-opcode', `BUILD on a ${describe(target)}`);
    const parts = Array.isArray(state) && Object.isFrozen(state) && state.length === 2 ? state : [state];
    for (const part of parts) {
      if (part !== null && !(part instanceof Map)) this.#fail('refused-opcode', `BUILD with a ${describe(part)} state`);
    }
  }

  #orderedDict(args: PickleValue[]): Map<PickleValue, PickleValue> {
    const dict = new Map<PickleValue, PickleValue>();
    if (args.length === 0) return dict;
    const items = args[0]!;
    if (args.length > 1 || !Array.isArray(items)) this.#fail('bad-pickle', 'OrderedDict() takes one list of pairs');
    for (const pair of items) {
      if (!Array.isArray(pair) || pair.length !== 2) this.#fail('bad-pickle', 'OrderedDict() item is not a pair');
      this.#setItems(dict, [pair[0]!, pair[1]!], 'OrderedDict()');
    }
    return dict;
  }

  #set(args: PickleValue[], name: string): Set<PickleValue> {
    if (args.length === 0) return new Set();
    const items = args[0]!;
    if (args.length > 1 || !Array.isArray(items)) this.#fail('bad-pickle', `${name}() takes one list`);
    return new Set(items.map((item) => this.#hashable(item, name)));
  }

  /** Protocol-2 pickles of Python 3 bytes: `_codecs.encode(text, 'latin1')`. */
  #encodeLatin1(args: PickleValue[]): Uint8Array {
    const [text, encoding] = args;
    if (args.length !== 2 || typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
      this.#fail('refused-opcode', "_codecs.encode other than encode(str, 'latin1')");
    }
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code > 0xff) this.#fail('bad-pickle', '_codecs.encode: character outside Latin-1');
      bytes[i] = code;
    }
    return bytes;
  }

  #bool(value: PickleValue, what: string): boolean {
    if (typeof value === 'boolean') return value;
    if (value === 0 || value === 1) return value === 1;
    return this.#fail('bad-tensor', `${what} must be a bool, got ${describe(value)}`);
  }

  /** Checks the shape arguments now; whether they fit the storage is checked when it is read. */
  #tensor(args: PickleValue[], requiresGrad: boolean): TensorRef {
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof StorageRef)) this.#fail('bad-tensor', `tensor storage is a ${describe(storage!)}`);
    const sizes = this.#intTuple(size!, 'size');
    const strides = this.#intTuple(stride!, 'stride');
    if (sizes.length !== strides.length) {
      this.#fail('bad-tensor', `tensor has ${sizes.length} sizes but ${strides.length} strides`);
    }
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
      this.#fail('bad-tensor', `tensor storage offset must be a non-negative int, got ${describe(offset!)}`);
    }
    return new TensorRef(storage, offset, sizes, strides, requiresGrad, false);
  }

  #intTuple(value: PickleValue, what: string): number[] {
    if (!Array.isArray(value)) this.#fail('bad-tensor', `tensor ${what} must be a tuple, got ${describe(value)}`);
    if (value.length > MAX_TENSOR_DIMS) {
      this.#fail('bad-tensor', `tensor ${what} has ${value.length} dimensions (at most ${MAX_TENSOR_DIMS})`);
    }
    return value.map((entry) => {
      if (typeof entry !== 'number' || !Number.isSafeInteger(entry) || entry < 0) {
        this.#fail('bad-tensor', `tensor ${what} entries must be non-negative ints, got ${String(entry)}`);
      }
      return entry;
    });
  }
}

// ---- writing ----------------------------------------------------------------------------

/** Builds a protocol-2 pickle opcode by opcode (only what saveCheckpoint needs). */
export class PickleWriter {
  #buffer = new Uint8Array(1024);
  #length = 0;
  readonly #globals = new Map<string, number>();
  #memoSize = 0;

  #reserve(count: number): void {
    if (this.#length + count <= this.#buffer.length) return;
    const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + count));
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
  }

  #byte(value: number): this {
    this.#reserve(1);
    this.#buffer[this.#length++] = value;
    return this;
  }

  #raw(bytes: Uint8Array): this {
    this.#reserve(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
    return this;
  }

  #u32(value: number): this {
    this.#reserve(4);
    new DataView(this.#buffer.buffer).setUint32(this.#length, value, true);
    this.#length += 4;
    return this;
  }

  proto(version: number): this {
    return this.#byte(0x80).#byte(version);
  }

  stop(): this {
    return this.#byte(0x2e);
  }

  mark(): this {
    return this.#byte(0x28);
  }

  none(): this {
    return this.#byte(0x4e);
  }

  bool(value: boolean): this {
    return this.#byte(value ? 0x88 : 0x89);
  }

  int(value: number | bigint): this {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) {
      throw new RangeError(`PickleWriter.int: ${value} is not a safe integer`);
    }
    const big = BigInt(value);
    if (big >= 0n && big < 256n) return this.#byte(0x4b).#byte(Number(big));
    if (big >= 0n && big < 65536n)
      return this.#byte(0x4d)
        .#byte(Number(big) & 0xff)
        .#byte(Number(big) >> 8);
    if (big >= -(2n ** 31n) && big < 2n ** 31n) return this.#byte(0x4a).#u32(Number(big) >>> 0);
    // LONG1: minimal two's-complement little-endian bytes.
    const bytes: number[] = [];
    let rest = big;
    for (;;) {
      const low = Number(rest & 0xffn);
      bytes.push(low);
      rest >>= 8n;
      if ((rest === 0n && (low & 0x80) === 0) || (rest === -1n && (low & 0x80) !== 0)) break;
    }
    return this.#byte(0x8a).#byte(bytes.length).#raw(Uint8Array.from(bytes));
  }

  float(value: number): this {
    this.#byte(0x47).#reserve(8);
    new DataView(this.#buffer.buffer).setFloat64(this.#length, value, false);
    this.#length += 8;
    return this;
  }

  string(value: string): this {
    const bytes = new TextEncoder().encode(value);
    return this.#byte(0x58).#u32(bytes.length).#raw(bytes);
  }

  emptyTuple(): this {
    return this.#byte(0x29);
  }

  /** TUPLE: everything since the last mark. */
  tuple(): this {
    return this.#byte(0x74);
  }

  emptyList(): this {
    return this.#byte(0x5d);
  }

  appends(): this {
    return this.#byte(0x65);
  }

  emptyDict(): this {
    return this.#byte(0x7d);
  }

  setItems(): this {
    return this.#byte(0x75);
  }

  /** GLOBAL, memoized: the second use of a name is a BINGET/LONG_BINGET. */
  global(module: string, name: string): this {
    const key = `${module}\n${name}\n`;
    const index = this.#globals.get(key);
    if (index !== undefined) return index < 256 ? this.#byte(0x68).#byte(index) : this.#byte(0x6a).#u32(index);
    this.#byte(0x63).#raw(new TextEncoder().encode(key));
    const slot = this.#memoSize++;
    this.#globals.set(key, slot);
    return slot < 256 ? this.#byte(0x71).#byte(slot) : this.#byte(0x72).#u32(slot);
  }

  reduce(): this {
    return this.#byte(0x52);
  }

  binPersId(): this {
    return this.#byte(0x51);
  }

  bytes(): Uint8Array {
    return this.#buffer.slice(0, this.#length);
  }
}
