// The grid on BullMQ: a redis-server of the test's own on a loopback port, two `mcldef worker`
// processes, one killed with SIGKILL (its whole process group, as a power loss would) while it
// runs a cell. Every cell must be recorded exactly once, with the results of the embedded run.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { test } from 'node:test';

import { parseGrid } from '../../src/bench/grid.js';
import { runGridOnQueue } from '../../src/bench/queue.js';
import { runGrid } from '../../src/bench/runner.js';
import { type DoneRecord, ResultsStore } from '../../src/bench/store.js';
import { tinyGrid } from '../helpers/grid.js';
import { hasRedis, spawnWorker, startRedis } from '../helpers/redis.js';
import { temporaryFolder } from '../helpers/tmp.js';
import { tinyImageFolder } from '../helpers/tiny-data.js';

process.env.MCLDEF_CACHE_DIR = temporaryFolder('mcldef-queue-cache-');
test(
  'two workers, one killed mid-cell: every cell recorded exactly once, as in the embedded run',
  { skip: !hasRedis() && 'no redis-server' },
  async () => {
    const data = tinyImageFolder({ levels: [50, 120, 200], count: 30, seed: 3 });
    const grid = parseGrid(
      tinyGrid('  - name: ft\n    epochs: 2\n  - name: clp\n  - name: nad\n    teacher-epochs: 1\n    epochs: 1', data),
    );
    const embedded = temporaryFolder('mcldef-queue-embedded-');
    await runGrid(grid, { results: embedded });

    const redis = await startRedis();
    const workers: ChildProcess[] = [];
    try {
      const queue = redis.url;
      const artifacts = temporaryFolder('mcldef-queue-artifacts-');
      const logs: string[] = [];
      let killed: { worker: number; cell: string } | undefined;
      for (let i = 0; i < 2; i++) {
        // Each worker leads its own process group: killing the group takes its job's process too.
        const worker = spawnWorker(queue, artifacts, ['--stall-timeout', '2'], { detached: true, stdio: 'pipe' });
        workers.push(worker);
        worker.stdout!.on('data', (chunk: Buffer) => {
          const text = chunk.toString('utf8');
          logs.push(...text.split('\n').map((line) => `worker ${i}: ${line}`));
          const started = /cell ([0-9a-f]{16}) \(.*\): start/.exec(text);
          if (started !== null && killed === undefined) {
            killed = { worker: i, cell: started[1]! };
            process.kill(-worker.pid!, 'SIGKILL');
          }
        });
      }
      const results = temporaryFolder('mcldef-queue-results-');
      const summary = await runGridOnQueue(grid, { queue, results, pollSeconds: 0.2 });
      assert.ok(killed !== undefined, 'a worker was killed while it ran a cell');
      assert.equal(workers[killed.worker]!.signalCode, 'SIGKILL');
      assert.equal(summary.ran, grid.cells.length, 'each cell recorded once by the coordinator');
      assert.deepEqual([summary.done, summary.failed], [grid.cells.length, 0]);
      const store = new ResultsStore(results);
      const reference = new ResultsStore(embedded);
      assert.equal(store.all().length, grid.cells.length);
      for (const cell of grid.cells) {
        const record = store.read(cell.id) as DoneRecord;
        const expected = reference.read(cell.id) as DoneRecord;
        assert.equal(record.status, 'done', `${cell.model.label} × ${cell.defense.label}`);
        assert.deepEqual(
          { before: record.before, after: record.after, der: record.der, model: { ...record.model, seconds: 0 } },
          {
            before: expected.before,
            after: expected.after,
            der: expected.der,
            model: { ...expected.model, seconds: 0 },
          },
          `${cell.model.label} × ${cell.defense.label}: the same results as the embedded run`,
        );
      }
      // The killed worker's cell was finished by the other one.
      const { worker: victim, cell: lost } = killed;
      assert.ok(
        logs.some((line) => line.startsWith(`worker ${1 - victim}: cell ${lost}: done`)),
        logs.join('\n'),
      );
      // A second coordinator run finds everything recorded and queues nothing.
      const again = await runGridOnQueue(grid, { queue, results, pollSeconds: 0.2 });
      assert.equal(again.ran, 0);
    } finally {
      for (const worker of workers) {
        try {
          process.kill(-worker.pid!, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      await redis.stop();
    }
  },
);
