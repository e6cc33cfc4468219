// `npm run bench:grid-overhead`: the grid runner's own cost. A grid of 40 small cells (a
// tiny backdoored WRN-16-1 and a clean one, FT at 20 learning rates) runs embedded, then on a BullMQ queue
// (a redis-server of its own on a loopback port) with one worker. Prints the runner's own
// seconds per cell (wall time less the cells' and the model's own seconds: store, queue,
// polling, the job's child process) beside the cells' seconds, and the worker's resident
// memory after each cell. Needs redis-server for the queue half.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { parseGrid } from '../src/bench/grid.js';
import { runGridOnQueue } from '../src/bench/queue.js';
import { runGrid } from '../src/bench/runner.js';
import { type DoneRecord, ResultsStore } from '../src/bench/store.js';
import { tinyGrid } from '../test/helpers/grid.js';
import { hasRedis, spawnWorker, startRedis } from '../test/helpers/redis.js';
import { temporaryFolder } from '../test/helpers/tmp.js';
import { tinyImageFolder } from '../test/helpers/tiny-data.js';

process.env.MCLDEF_CACHE_DIR = temporaryFolder('mcldef-overhead-cache-');
const data = tinyImageFolder({ levels: [50, 120, 200], count: 30, seed: 3 });
const defenses = Array.from(
  { length: 20 },
  (_, i) => `  - name: ft\n    label: ft-${i}\n    epochs: 3\n    lr: ${(0.01 + i * 0.001).toFixed(3)}`,
).join('\n');
const grid = parseGrid(tinyGrid(defenses, data));
const CELLS = grid.cells.length;

/** The cells' own seconds, and the training seconds of each distinct model. */
function cellSeconds(results: string): { cells: number; models: number } {
  const records = new ResultsStore(results).all().filter((r): r is DoneRecord => r.status === 'done');
  if (records.length !== CELLS) throw new Error(`${records.length} of ${CELLS} cells done`);
  const models = new Map(records.map((r) => [r.model.id, r.model.seconds]));
  return {
    cells: records.reduce((sum, r) => sum + r.seconds_total, 0),
    models: [...models.values()].reduce((sum, s) => sum + s, 0),
  };
}

/**
 * Embedded, the cell that trains a model counts its training in its own seconds; on the
 * queue a model trains in a job of its own, whose seconds are taken off the wall time too.
 */
function report(label: string, wall: number, results: string, modelsApart: boolean): void {
  const { cells, models } = cellSeconds(results);
  const own = wall - cells - (modelsApart ? models : 0);
  console.log(
    `${label}: wall ${wall.toFixed(1)} s, cells ${cells.toFixed(1)} s (${(cells / CELLS).toFixed(2)} s each)${modelsApart ? `, model jobs ${models.toFixed(1)} s` : ''}; the runner's own ${own.toFixed(2)} s = ${(own / CELLS).toFixed(3)} s per cell (${((100 * own) / cells).toFixed(2)} % of these cells' time)`,
  );
}

const embedded = temporaryFolder('mcldef-overhead-embedded-');
let started = performance.now();
await runGrid(grid, { results: embedded });
report('embedded', (performance.now() - started) / 1000, embedded, false);

if (!hasRedis()) {
  console.log('queue: skipped (no redis-server)');
  process.exit(0);
}
const redis = await startRedis();
let worker: ChildProcess | undefined;
try {
  const queue = redis.url;
  worker = spawnWorker(queue, temporaryFolder('mcldef-overhead-artifacts-'), ['--quiet']);
  const rss = (): number => {
    const status = readFileSync(`/proc/${worker!.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
  };
  const memory: number[] = [];
  const results = temporaryFolder('mcldef-overhead-queue-');
  started = performance.now();
  await runGridOnQueue(grid, {
    queue,
    results,
    pollSeconds: 0.25,
    progress: (p) => {
      if (p.record !== undefined) memory.push(rss());
    },
  });
  report('queue (1 worker)', (performance.now() - started) / 1000, results, true);
  console.log(
    `worker resident memory after each of ${memory.length} cells (MiB): ${memory.map((m) => m.toFixed(0)).join(' ')}; first ${memory[0]!.toFixed(0)}, last ${memory.at(-1)!.toFixed(0)}, max ${Math.max(...memory).toFixed(0)}`,
  );
  console.log(`(results: ${join(results, 'cells')})`);
} finally {
  worker?.kill('SIGKILL');
  await redis.stop();
}
