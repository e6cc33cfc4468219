// The process a worker runs its grid jobs in (so that the worker's own event loop keeps the
// queue's lock alive while libtorch computes). It stays up between jobs, which spares each
// job the start of a Node process and the loading of libtorch: jobs come and results go over
// the IPC channel, the log on stdout.
import '../defenses/index.js';
import { releaseHostMemory } from '../engine/index.js';
import { ensureModel, runCell } from './cell.js';
import type { CellSpec, ModelSpec } from './grid.js';

export type ChildJob =
  | { kind: 'model'; model: ModelSpec; needs: ModelSpec[]; artifacts: string }
  | { kind: 'cell'; cell: CellSpec; artifacts: string };

export type ChildReply = { ok: true; result: unknown } | { ok: false; error: string };

const log = (line: string): void => void process.stdout.write(`${line}\n`);

async function handle(job: ChildJob): Promise<unknown> {
  if (job.kind === 'model') {
    for (const needed of job.needs) ensureModel(needed, job.artifacts, log);
    return ensureModel(job.model, job.artifacts, log);
  }
  return runCell(job.cell, { artifacts: job.artifacts, log });
}

if (process.send === undefined)
  throw new Error('src/bench/child is started by mcldef worker (it needs an IPC channel)');
process.on('message', (job: ChildJob) => {
  handle(job)
    .finally(releaseHostMemory)
    .then(
      (result) => process.send!({ ok: true, result } satisfies ChildReply),
      (error: unknown) =>
        process.send!({
          ok: false,
          error: error instanceof Error ? error.message : String(error),
        } satisfies ChildReply),
    );
});
