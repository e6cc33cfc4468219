// The caching host allocator (native/memory.cc, src/engine/memory.ts): a freed tensor's
// block is handed out again instead of being faulted in afresh, the cache stays within its
// bound, releaseHostMemory() empties it, tensors keep their values, and a bad
// MCLDEF_HOST_MEMORY is a one-line error.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resourceUsage } from 'node:process';
import { test } from 'node:test';

import {
  arange,
  getHostMemoryPolicy,
  hostMemoryStats,
  ones,
  releaseHostMemory,
  setHostMemoryPolicy,
} from '../../src/index.js';

const BLOCK = 10 * 2 ** 20; // float32 elements: 40 MiB, above glibc's largest mmap threshold
const PAGES = (4 * BLOCK) / 4096;

/** Minor page faults over 5 allocations of a written-to 40 MiB tensor, each freed. */
function faultsOver(): number {
  ones([BLOCK]).dispose(); // the first allocation faults under any policy
  const before = resourceUsage().minorPageFault;
  for (let i = 0; i < 5; i++) ones([BLOCK]).dispose();
  return resourceUsage().minorPageFault - before;
}

test('the cache is the default; freed blocks are reused, where malloc faults them in again', () => {
  assert.equal(getHostMemoryPolicy(), 'cache');
  try {
    setHostMemoryPolicy('system');
    const systemFaults = faultsOver();
    setHostMemoryPolicy('cache');
    const hitsBefore = hostMemoryStats().hits;
    const cachedFaults = faultsOver();
    const hits = hostMemoryStats().hits - hitsBefore;
    console.log(`minor faults over 5 × 40 MiB: system ${systemFaults}, cache ${cachedFaults} (${PAGES} pages a block)`);
    assert.ok(systemFaults >= 4 * PAGES, `system policy: ${systemFaults} faults, expected ≥ ${4 * PAGES}`);
    assert.ok(cachedFaults < PAGES / 10, `cache policy: ${cachedFaults} faults, expected < ${PAGES / 10}`);
    assert.ok(hits >= 5, `${hits} cache hits for 5 reallocations`);
  } finally {
    setHostMemoryPolicy('cache');
  }
});

test('a reused block holds the new tensor exactly; sizes that differ by more than an eighth do not share', () => {
  releaseHostMemory();
  arange(0, 100_000).dispose(); // 800 KB (int64): cached on free
  assert.equal(hostMemoryStats().cachedBlocks, 1);
  const reused = arange(0, 90_000); // 720 KB: within an eighth, takes the cached block
  assert.equal(hostMemoryStats().cachedBlocks, 0);
  const values = reused.toTypedArray() as BigInt64Array;
  assert.equal(values.length, 90_000);
  assert.equal(values[89_999], 89_999n);
  reused.dispose();
  const smaller = arange(0, 50_000); // 400 KB: the 800 KB block is too large for it
  assert.equal(hostMemoryStats().cachedBlocks, 1);
  smaller.dispose();
  assert.equal(hostMemoryStats().cachedBlocks, 2);
});

test('the cache stays within its bound, and releaseHostMemory empties it', () => {
  try {
    setHostMemoryPolicy('cache', { maxCachedBytes: 100 * 2 ** 20 });
    releaseHostMemory();
    const tensors = [1, 2, 3].map(() => ones([BLOCK])); // 3 × 40 MiB alive at once
    for (const t of tensors) t.dispose(); // the third would overflow 100 MiB: the cache is emptied first
    assert.equal(hostMemoryStats().cachedBytes, 4 * BLOCK);
    const rss = process.memoryUsage.rss();
    assert.equal(releaseHostMemory(), 4 * BLOCK);
    assert.equal(hostMemoryStats().cachedBlocks, 0);
    const released = (rss - process.memoryUsage.rss()) / 2 ** 20;
    assert.ok(released >= 30, `RSS fell ${released.toFixed(0)} MiB when 40 MiB were released`);
  } finally {
    setHostMemoryPolicy('cache');
  }
});

test('a bad policy is refused with a one-line error', () => {
  assert.throws(
    () => setHostMemoryPolicy('keep' as never),
    /host memory policy must be 'cache' or 'system', not 'keep'/,
  );
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', "await import('./src/engine/index.ts')"],
    { encoding: 'utf8', env: { ...process.env, MCLDEF_HOST_MEMORY: 'lots' } },
  );
  assert.notEqual(child.status, 0);
  assert.match(child.stderr, /MCLDEF_HOST_MEMORY must be 'cache' or 'system', not 'lots'/);
});
