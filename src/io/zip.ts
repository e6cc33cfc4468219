// Zip archives as PyTorch writes them (torch.save since 1.6): reading and writing.
//
// Reading walks the central directory itself, with every offset and count checked against
// the archive's length before use, and hands deflated records to fflate's inflate with an
// output buffer bounded by the input. (fflate's own unzipSync trusts the directory's entry
// count and sizes, so a corrupt archive could make it loop or allocate without bound.)
// Records are returned as views into the archive, and their CRC-32 is checked on access.
// Writing stores records uncompressed with their data aligned to 64 bytes, like PyTorch's
// own writer, so readers may map them in place.
import * as zlib from 'node:zlib';

import { inflateSync } from 'fflate';

import { CheckpointError } from './errors.js';

export interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const END_OF_DIRECTORY = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_END_OF_DIRECTORY = 0x06064b50;
/** Deflate cannot expand data by more than about 1032:1. */
const MAX_DEFLATE_RATIO = 1032;
const ALIGNMENT = 64;

// ---- CRC-32 ---------------------------------------------------------------------------------

let crcTable: Uint32Array | undefined;

function crc32Js(data: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// Node ≥ 20.15 has a native crc32 (much faster on large storages); older Nodes use the table.
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

export function crc32(data: Uint8Array): number {
  return nativeCrc32 !== undefined ? nativeCrc32(data) >>> 0 : crc32Js(data);
}

// ---- reading --------------------------------------------------------------------------------

function badZip(problem: string): never {
  throw new CheckpointError('bad-zip', `corrupt zip archive: ${problem}`);
}

export class ZipReader {
  readonly entries: ReadonlyMap<string, ZipEntry>;
  /** Entry names in directory order (the first one names PyTorch's archive folder). */
  readonly names: readonly string[];
  readonly #bytes: Uint8Array;
  readonly #view: DataView;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const entries = new Map<string, ZipEntry>();
    const names: string[] = [];
    for (const entry of this.#readDirectory()) {
      if (entries.has(entry.name)) badZip(`record '${entry.name}' appears twice`);
      entries.set(entry.name, entry);
      names.push(entry.name);
    }
    this.entries = entries;
    this.names = names;
  }

  #u16(offset: number): number {
    return this.#view.getUint16(offset, true);
  }

  #u32(offset: number): number {
    return this.#view.getUint32(offset, true);
  }

  #u64(offset: number): number {
    const value = this.#view.getBigUint64(offset, true);
    return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
  }

  #fits(offset: number, length: number): boolean {
    return offset >= 0 && length >= 0 && offset + length <= this.#bytes.length;
  }

  #readDirectory(): ZipEntry[] {
    const length = this.#bytes.length;
    if (length < 22) throw new CheckpointError('truncated', `zip archive of ${length} bytes is truncated`);
    // The end-of-directory record sits in the last 22 + 65535 (comment) bytes.
    let end = -1;
    for (let at = length - 22; at >= Math.max(0, length - 22 - 65535); at--) {
      if (this.#u32(at) === END_OF_DIRECTORY) {
        end = at;
        break;
      }
    }
    if (end < 0) {
      throw new CheckpointError(
        'truncated',
        'zip archive has no end-of-directory record (truncated, or not a complete zip file)',
      );
    }
    let count = this.#u16(end + 10);
    let directorySize = this.#u32(end + 12);
    let directoryOffset = this.#u32(end + 16);
    if (count === 0xffff || directorySize === 0xffffffff || directoryOffset === 0xffffffff) {
      const locator = end - 20;
      if (locator < 0 || this.#u32(locator) !== ZIP64_LOCATOR) badZip('zip64 locator missing');
      const zip64End = this.#u64(locator + 8);
      if (!this.#fits(zip64End, 56) || this.#u32(zip64End) !== ZIP64_END_OF_DIRECTORY) {
        badZip('zip64 end-of-directory record missing');
      }
      count = this.#u64(zip64End + 32);
      directorySize = this.#u64(zip64End + 40);
      directoryOffset = this.#u64(zip64End + 48);
    }
    if (!this.#fits(directoryOffset, directorySize) || directoryOffset + directorySize > end) {
      throw new CheckpointError(
        'truncated',
        `zip directory (${directorySize} bytes at ${directoryOffset}) lies outside the ${length}-byte archive (truncated?)`,
      );
    }
    // A central header is at least 46 bytes: a larger count is a lie, not a reason to loop.
    if (count > directorySize / 46) badZip(`${count} entries cannot fit in a ${directorySize}-byte directory`);
    const entries: ZipEntry[] = [];
    let at = directoryOffset;
    const directoryEnd = directoryOffset + directorySize;
    for (let i = 0; i < count; i++) {
      if (at + 46 > directoryEnd || this.#u32(at) !== CENTRAL_HEADER) badZip(`directory entry ${i} is damaged`);
      const method = this.#u16(at + 10);
      const crc = this.#u32(at + 16);
      let compressedSize = this.#u32(at + 20);
      let size = this.#u32(at + 24);
      const nameLength = this.#u16(at + 28);
      const extraLength = this.#u16(at + 30);
      const commentLength = this.#u16(at + 32);
      let localHeaderOffset = this.#u32(at + 42);
      const next = at + 46 + nameLength + extraLength + commentLength;
      if (next > directoryEnd) badZip(`directory entry ${i} runs past the directory`);
      const name = new TextDecoder().decode(this.#bytes.subarray(at + 46, at + 46 + nameLength));
      // Zip64 sizes and offset, in this order, for the fields that hold 0xffffffff.
      let extra = at + 46 + nameLength;
      const extraEnd = extra + extraLength;
      while (extra + 4 <= extraEnd) {
        const id = this.#u16(extra);
        const fieldLength = this.#u16(extra + 2);
        if (extra + 4 + fieldLength > extraEnd) badZip(`entry '${name}' has a damaged extra field`);
        if (id === 0x0001) {
          let field = extra + 4;
          const take = (): number => {
            if (field + 8 > extra + 4 + fieldLength) badZip(`entry '${name}' has a short zip64 field`);
            const value = this.#u64(field);
            field += 8;
            return value;
          };
          if (size === 0xffffffff) size = take();
          if (compressedSize === 0xffffffff) compressedSize = take();
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
        }
        extra += 4 + fieldLength;
      }
      entries.push({ name, method, crc32: crc, compressedSize, size, localHeaderOffset });
      at = next;
    }
    return entries;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** A record's bytes (a view into the archive when stored), CRC-checked. */
  read(name: string): Uint8Array {
    const entry = this.entries.get(name);
    if (entry === undefined) throw new CheckpointError('missing-record', `the archive has no record '${name}'`);
    const header = entry.localHeaderOffset;
    if (!this.#fits(header, 30) || this.#u32(header) !== LOCAL_HEADER) {
      badZip(`the local header of '${name}' is missing or damaged`);
    }
    const dataStart = header + 30 + this.#u16(header + 26) + this.#u16(header + 28);
    if (!this.#fits(dataStart, entry.compressedSize)) {
      throw new CheckpointError(
        'truncated',
        `record '${name}' (${entry.compressedSize} bytes at ${dataStart}) runs past the end of the archive (truncated?)`,
      );
    }
    const stored = this.#bytes.subarray(dataStart, dataStart + entry.compressedSize);
    let data: Uint8Array;
    if (entry.method === 0) {
      if (entry.size !== entry.compressedSize) badZip(`stored record '${name}' has two different sizes`);
      data = stored;
    } else if (entry.method === 8) {
      if (entry.size > MAX_DEFLATE_RATIO * entry.compressedSize + 1024 || entry.size > 2 ** 31) {
        badZip(`record '${name}' claims ${entry.size} bytes from ${entry.compressedSize} compressed`);
      }
      try {
        data = inflateSync(stored, { out: new Uint8Array(entry.size) });
      } catch (error) {
        throw new CheckpointError('bad-zip', `corrupt zip archive: record '${name}' does not inflate`, {
          cause: error,
        });
      }
      if (data.length !== entry.size) badZip(`record '${name}' inflates to ${data.length} bytes, not ${entry.size}`);
    } else {
      badZip(`record '${name}' uses compression method ${entry.method} (only stored and deflate are read)`);
    }
    if (crc32(data) !== entry.crc32) badZip(`record '${name}' fails its CRC-32 check`);
    return data;
  }
}

/** Whether bytes start like a zip archive. */
export function looksLikeZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

// ---- writing --------------------------------------------------------------------------------

/**
 * A zip archive of stored records as parts to write one after another (the record data
 * is not copied). Limited to 4 GiB and 65,534 records (no zip64).
 */
export function zipParts(records: readonly { name: string; data: Uint8Array }[]): Uint8Array[] {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const encoder = new TextEncoder();
  // 1980-01-01 00:00, the earliest DOS date (PyTorch writes a fixed date too).
  const dosTime = 0;
  const dosDate = (0 << 9) | (1 << 5) | 1;
  for (const { name, data } of records) {
    const nameBytes = encoder.encode(name);
    // Pad the local header with an extra field so that the data starts at a multiple of 64.
    const unpadded = offset + 30 + nameBytes.length;
    const padding = unpadded % ALIGNMENT === 0 ? 0 : 4 + ((ALIGNMENT - ((unpadded + 4) % ALIGNMENT)) % ALIGNMENT);
    const crc = crc32(data);
    const local = new Uint8Array(30 + nameBytes.length + padding);
    const localView = new DataView(local.buffer);
    localView.setUint32(0, LOCAL_HEADER, true);
    localView.setUint16(4, 20, true);
    localView.setUint16(6, 0, true);
    localView.setUint16(8, 0, true);
    localView.setUint16(10, dosTime, true);
    localView.setUint16(12, dosDate, true);
    localView.setUint32(14, crc, true);
    localView.setUint32(18, data.length, true);
    localView.setUint32(22, data.length, true);
    localView.setUint16(26, nameBytes.length, true);
    localView.setUint16(28, padding, true);
    local.set(nameBytes, 30);
    if (padding > 0) {
      const at = 30 + nameBytes.length;
      localView.setUint16(at, 0x4246, true); // 'FB', the id PyTorch's writer uses for padding
      localView.setUint16(at + 2, padding - 4, true);
      local.fill(0x5a, at + 4, at + padding);
    }
    const entry = new Uint8Array(46 + nameBytes.length);
    const entryView = new DataView(entry.buffer);
    entryView.setUint32(0, CENTRAL_HEADER, true);
    entryView.setUint16(4, 20, true);
    entryView.setUint16(6, 20, true);
    entryView.setUint16(8, 0, true);
    entryView.setUint16(10, 0, true);
    entryView.setUint16(12, dosTime, true);
    entryView.setUint16(14, dosDate, true);
    entryView.setUint32(16, crc, true);
    entryView.setUint32(20, data.length, true);
    entryView.setUint32(24, data.length, true);
    entryView.setUint16(28, nameBytes.length, true);
    entryView.setUint32(42, offset, true);
    entry.set(nameBytes, 46);
    parts.push(local, data);
    central.push(entry);
    offset += local.length + data.length;
    if (offset >= 2 ** 32) throw new CheckpointError('too-large', 'checkpoint exceeds 4 GiB (zip64 is not written)');
  }
  if (records.length >= 0xffff) throw new CheckpointError('too-large', `${records.length} records (at most 65,534)`);
  const directorySize = central.reduce((total, entry) => total + entry.length, 0);
  const end = new Uint8Array(22);
  const endView = new DataView(end.buffer);
  endView.setUint32(0, END_OF_DIRECTORY, true);
  endView.setUint16(8, records.length, true);
  endView.setUint16(10, records.length, true);
  endView.setUint32(12, directorySize, true);
  endView.setUint32(16, offset, true);
  return [...parts, ...central, end];
}

/** The same archive as one buffer. */
export function zipBytes(records: readonly { name: string; data: Uint8Array }[]): Uint8Array {
  const parts = zipParts(records);
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
