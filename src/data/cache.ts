// Decoded splits cached as one binary file each, so a second load takes seconds.
// The file name comes from (kind, path, split, options); the header holds a signature
// of the source files (paths, sizes, mtimes), and a mismatch rebuilds the cache.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

import { writeFileAtomic } from '../io/checkpoint.js';
import type { ImageSplitInit } from './dataset.js';

const MAGIC = 'MCLDEFDS';
const FORMAT_VERSION = 1;

export function defaultCacheDir(): string {
  return (
    process.env.MCLDEF_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'mcldef', 'datasets')
  );
}

/** A digest of the source files' names, sizes and modification times. */
export function sourceSignature(files: readonly string[]): string {
  const hash = createHash('sha256');
  for (const file of files) {
    const stat = statSync(file);
    hash.update(`${resolve(file)}\0${stat.size}\0${stat.mtimeMs}\n`);
  }
  return hash.digest('hex');
}

interface Header {
  version: number;
  signature: string;
  count: number;
  channels: number;
  height: number;
  width: number;
  classNames: readonly string[];
  normalization: ImageSplitInit['normalization'];
  source: string;
}

export function cachePath(cacheDir: string, identity: string, label: string): string {
  const digest = createHash('sha256').update(identity).digest('hex').slice(0, 16);
  return join(cacheDir, `${label.replace(/[^a-z0-9-]/gi, '_')}-${digest}.bin`);
}

/** The cached split, or null when absent, stale or unreadable. */
export function readCache(path: string, signature: string): ImageSplitInit | null {
  if (!existsSync(path)) return null;
  try {
    const bytes = readFileSync(path);
    if (bytes.subarray(0, 8).toString('latin1') !== MAGIC) return null;
    const headerLength = bytes.readUInt32LE(8);
    const header = JSON.parse(bytes.subarray(12, 12 + headerLength).toString('utf8')) as Header;
    if (header.version !== FORMAT_VERSION || header.signature !== signature) return null;
    const pixelBytes = header.count * header.channels * header.height * header.width;
    const start = 12 + headerLength;
    if (bytes.length !== start + pixelBytes + 4 * header.count) return null;
    const labels = new Int32Array(header.count);
    new Uint8Array(labels.buffer).set(bytes.subarray(start + pixelBytes));
    return {
      pixels: bytes.subarray(start, start + pixelBytes),
      labels,
      channels: header.channels,
      height: header.height,
      width: header.width,
      classNames: header.classNames,
      normalization: header.normalization,
      source: header.source,
    };
  } catch {
    return null;
  }
}

/** Writes the cache file atomically (temp file, flush, rename). */
export function writeCache(path: string, signature: string, split: ImageSplitInit): void {
  mkdirSync(join(path, '..'), { recursive: true });
  const header: Header = {
    version: FORMAT_VERSION,
    signature,
    count: split.labels.length,
    channels: split.channels,
    height: split.height,
    width: split.width,
    classNames: split.classNames,
    normalization: split.normalization,
    source: split.source,
  };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(12);
  prefix.write(MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(headerBytes.length, 8);
  const labels = new Uint8Array(split.labels.buffer, split.labels.byteOffset, split.labels.byteLength);
  writeFileAtomic(path, [prefix, headerBytes, split.pixels, labels]);
}
