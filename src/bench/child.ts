// One grid job in a process of its own (what `mcldef worker` runs per job, so that its own
// event loop keeps the queue's lock alive while libtorch computes): the job as JSON on stdin,
// the result as JSON on file descriptor 3, the log on stdout.
import { readFileSync, writeSync } from 'node:fs';

import { ensureModel, runCell } from './cell.js';
import type { CellSpec, ModelSpec } from './grid.js';

export type ChildJob =
  | { kind: 'model'; model: ModelSpec; needs: ModelSpec[]; artifacts: string }
  | { kind: 'cell'; cell: CellSpec; artifacts: string };

const job = JSON.parse(readFileSync(0, 'utf8')) as ChildJob;
const log = (line: string): void => void process.stdout.write(`${line}\n`);
let result: unknown;
if (job.kind === 'model') {
  for (const needed of job.needs) ensureModel(needed, job.artifacts, log);
  result = ensureModel(job.model, job.artifacts, log);
} else {
  result = await runCell(job.cell, { artifacts: job.artifacts, log });
}
writeSync(3, JSON.stringify(result));
