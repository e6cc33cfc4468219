// Host memory policy: what happens to the CPU memory of freed tensors.
//
// 'cache' (the default) installs the addon's caching allocator (native/memory.cc): freed
// blocks of 64 KiB and more are kept and handed out again for the same sizes, so a training
// step reuses the previous step's memory instead of page-faulting fresh memory from the
// kernel (`npm run bench:host-memory`; docs/engine.md). The cache holds at most a quarter of
// the machine's memory by default, and `releaseHostMemory()` empties it: the grid runner does
// so after every cell. 'system' is libtorch's own allocator (malloc). MCLDEF_HOST_MEMORY=
// cache|system chooses before the first tensor exists.
import { totalmem } from 'node:os';

import { native } from './native.js';

export type HostMemoryPolicy = 'cache' | 'system';

export interface HostMemoryStats {
  policy: HostMemoryPolicy;
  /** Bytes of freed blocks held for reuse, and how many blocks. */
  cachedBytes: number;
  cachedBlocks: number;
  /** Requests of 64 KiB or more served from the cache, and from malloc. */
  hits: number;
  misses: number;
}

const ENV_NAME = 'MCLDEF_HOST_MEMORY';
const DEFAULT_MAX_CACHED = Math.floor(totalmem() / 4);

function policyFromEnv(): HostMemoryPolicy {
  const value = process.env[ENV_NAME];
  if (value === undefined || value === '' || value === 'cache') return 'cache';
  if (value === 'system') return 'system';
  throw new Error(`${ENV_NAME} must be 'cache' or 'system', not '${value}'`);
}

let policy: HostMemoryPolicy = policyFromEnv();
// 'system' from the environment never installs the caching allocator.
if (policy === 'cache') native.configureHostAllocator(true, DEFAULT_MAX_CACHED);

/** Chooses the policy; `maxCachedBytes` bounds the cache (default: a quarter of the memory). */
export function setHostMemoryPolicy(next: HostMemoryPolicy, options: { maxCachedBytes?: number } = {}): void {
  if (next !== 'cache' && next !== 'system')
    throw new Error(`host memory policy must be 'cache' or 'system', not '${String(next)}'`);
  const maxCached = options.maxCachedBytes ?? DEFAULT_MAX_CACHED;
  if (!Number.isFinite(maxCached) || maxCached < 0)
    throw new Error(`maxCachedBytes must be a number of bytes ≥ 0, not ${maxCached}`);
  // Blocks allocated while caching carry its deleter, so 'system' keeps the allocator
  // installed with its cache off and emptied.
  if (next === 'cache' || native.hostMemoryStats().installed)
    native.configureHostAllocator(next === 'cache', maxCached);
  policy = next;
}

export function getHostMemoryPolicy(): HostMemoryPolicy {
  return policy;
}

/** Empties the cache of freed host blocks; returns the bytes given back. */
export function releaseHostMemory(): number {
  return native.releaseHostMemory();
}

export function hostMemoryStats(): HostMemoryStats {
  const { cachedBytes, cachedBlocks, hits, misses } = native.hostMemoryStats();
  return { policy, cachedBytes, cachedBlocks, hits, misses };
}
