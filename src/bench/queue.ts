// Grids across machines on BullMQ (Redis): the coordinator (`mcldef bench run --queue`) puts
// each backdoored model on the queue as a job with a dependent job that releases the model's
// cells once it is trained; workers (`mcldef worker`) on any machine take jobs and run each in
// a child process; the coordinator writes every finished cell's record into the results
// store, once. A worker killed mid-job holds a lock that expires after the stall timeout;
// BullMQ then hands the job to another worker. Job ids are the cell and model ids, so adding
// a grid twice adds nothing twice.
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { FlowProducer, type Job, Queue, type RedisOptions, Worker } from 'bullmq';

import type { ChildJob, ChildReply } from './child.js';
import { type CellSelection, type CellSpec, type Grid, type ModelSpec, selectCells } from './grid.js';
import { gridStatus } from './runner.js';
import { type CellRecord, type ModelRecord, ResultsStore, recordBase } from './store.js';
import type { GridProgress, GridRunSummary } from './runner.js';

export const DEFAULT_QUEUE_NAME = 'mcldef-grid';

/** `redis://[:password@]host:port[/db]` as connection options. */
export function redisConnection(url: string): RedisOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`--queue ${url}: expected redis://HOST:PORT`);
  }
  if (parsed.protocol !== 'redis:') throw new Error(`--queue ${url}: expected redis://HOST:PORT`);
  const db = parsed.pathname.replace(/^\//, '');
  return {
    host: parsed.hostname,
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    ...(parsed.password === '' ? {} : { password: decodeURIComponent(parsed.password) }),
    ...(parsed.username === '' ? {} : { username: decodeURIComponent(parsed.username) }),
    ...(db === '' ? {} : { db: Number(db) }),
    // Workers block on the queue; BullMQ asks for no per-request retry limit.
    maxRetriesPerRequest: null,
  };
}

type JobData =
  | { kind: 'model'; model: ModelSpec; needs: ModelSpec[] }
  | { kind: 'release'; cells: CellSpec[] }
  | { kind: 'cell'; cell: CellSpec };

const cellJobId = (id: string): string => `cell-${id}`;
const modelJobId = (id: string): string => `model-${id}`;
const cellJob = (cell: CellSpec): { name: string; data: JobData; opts: { jobId: string } } => ({
  name: 'cell',
  data: { kind: 'cell', cell },
  opts: { jobId: cellJobId(cell.id) },
});

export interface QueueGridOptions {
  queue: string;
  queueName?: string;
  results: string;
  retryFailed?: boolean;
  /** Queue only these cells now (the store keeps the whole grid). */
  only?: CellSelection;
  /** Seconds between looks at the queue (default 1). */
  pollSeconds?: number;
  log?: (line: string) => void;
  progress?: (progress: GridProgress) => void;
}

/**
 * Puts a grid's unrecorded cells on the queue and records each finished one in the store;
 * returns when every cell has a record. Run again after an interruption: cells the workers
 * finished meanwhile are collected from the queue, nothing is queued twice.
 */
export async function runGridOnQueue(wholeGrid: Grid, options: QueueGridOptions): Promise<GridRunSummary> {
  const started = performance.now();
  const connection = redisConnection(options.queue);
  const name = options.queueName ?? DEFAULT_QUEUE_NAME;
  const queue = new Queue<JobData>(name, { connection });
  const flows = new FlowProducer({ connection });
  const store = new ResultsStore(options.results);
  const log = options.log ?? ((): void => {});
  const grid = selectCells(wholeGrid, options.only);
  try {
    store.saveGrid(wholeGrid);
    if (options.retryFailed === true) {
      for (const cell of grid.cells) {
        if (store.read(cell.id)?.status !== 'failed') continue;
        store.forgetFailed(cell.id);
        await (await queue.getJob(cellJobId(cell.id)))?.remove();
        const model = await queue.getJob(modelJobId(cell.model.id));
        if ((await model?.getState()) === 'failed') await model!.remove({ removeChildren: true });
      }
    }
    const pending = (): CellSpec[] => grid.cells.filter((cell) => store.read(cell.id) === undefined);
    // Each model with its cells: a model job and, depending on it, the job that releases the cells.
    const byModel = new Map<string, CellSpec[]>();
    for (const cell of pending()) byModel.set(cell.model.id, [...(byModel.get(cell.model.id) ?? []), cell]);
    for (const [modelId, cells] of byModel) {
      const existing = await queue.getJob(modelJobId(modelId));
      if (existing !== undefined) continue;
      await flows.add({
        name: 'release',
        queueName: name,
        data: { kind: 'release', cells },
        opts: { jobId: `release-${modelId}` },
        children: [
          {
            name: 'model',
            queueName: name,
            data: { kind: 'model', model: cells[0]!.model, needs: cells[0]!.needs },
            opts: { jobId: modelJobId(modelId), failParentOnFailure: true },
          },
        ],
      });
    }
    log(
      `queued ${pending().length} cells of ${grid.cells.length} (${byModel.size} models) on ${name} at ${options.queue}`,
    );
    let cellSeconds = 0;
    let ran = 0;
    const poll = (options.pollSeconds ?? 1) * 1000;
    for (;;) {
      const waiting = pending();
      let running = 0;
      for (const cell of waiting) {
        const job = (await queue.getJob(cellJobId(cell.id))) as Job<JobData, CellRecord> | undefined;
        if (job === undefined) {
          // Not released yet: the model is still training, or it failed, or it finished before
          // this cell joined the grid.
          const model = await queue.getJob(modelJobId(cell.model.id));
          const state = await model?.getState();
          if (state === 'completed') await queue.add('cell', { kind: 'cell', cell }, { jobId: cellJobId(cell.id) });
          else if (state === 'failed') {
            store.record(failure(cell, `training its model failed: ${model!.failedReason}`));
          }
          continue;
        }
        const state = await job.getState();
        if (state === 'completed') {
          // Fetched before it completed, the job object has no return value yet: next look.
          const record = job.returnvalue as CellRecord | null;
          if (record === null) continue;
          if (store.record(record)) {
            cellSeconds += record.seconds_total;
            ran++;
            const left = gridStatus(grid, store).pending;
            options.progress?.({
              ...counts(grid, store, running),
              etaSeconds: (cellSeconds / ran) * left,
              cell: summary(cell),
              record,
            });
          }
        } else if (state === 'failed') {
          store.record(failure(cell, job.failedReason));
        } else if (state === 'active') running++;
      }
      const status = gridStatus(grid, store);
      options.progress?.({
        ...counts(grid, store, running),
        etaSeconds: ran === 0 ? null : (cellSeconds / ran) * status.pending,
      });
      if (status.pending === 0) break;
      await new Promise((resolve) => setTimeout(resolve, poll));
    }
    const status = gridStatus(grid, store);
    const seconds = (performance.now() - started) / 1000;
    return {
      total: grid.cells.length,
      ran,
      done: status.done,
      failed: status.failed,
      skipped: grid.cells.length - ran,
      seconds,
      overheadSeconds: Math.max(0, seconds - cellSeconds),
    };
  } finally {
    await flows.close();
    await queue.close();
  }
}

const summary = (cell: CellSpec): NonNullable<GridProgress['cell']> => ({
  id: cell.id,
  attack: cell.model.label,
  defense: cell.defense.label,
  seed: cell.seed,
});

function counts(grid: Grid, store: ResultsStore, running: number): GridProgress {
  const status = gridStatus(grid, store);
  return { total: grid.cells.length, done: status.done, failed: status.failed, running, etaSeconds: null };
}

function failure(cell: CellSpec, error: string): CellRecord {
  return {
    ...recordBase(cell, 'queue'),
    status: 'failed',
    error,
    seconds_total: 0,
    finished: new Date().toISOString(),
  };
}

export interface WorkerOptions {
  queue: string;
  queueName?: string;
  /** The shared folder where models are trained to and found (every worker the same). */
  artifacts: string;
  /** Jobs at once (default 1: a job uses every core). */
  concurrency?: number;
  /** Seconds after which a job whose worker stopped answering goes to another (default 30). */
  stallTimeout?: number;
  log?: (line: string) => void;
}

/** The child process entry (TypeScript under tsx, JavaScript once built). */
const childEntry = fileURLToPath(new URL(`./child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

/** Jobs before a job process is replaced by a fresh one (bounds anything that accumulates). */
const JOBS_PER_PROCESS = 25;

/**
 * A long-lived child process that runs jobs one at a time. Its death mid-job fails that job
 * (BullMQ retries it); the next job starts a new process.
 */
class JobProcess {
  private child: ChildProcess | undefined;
  private jobs = 0;

  constructor(private readonly log: (line: string) => void) {}

  run(job: ChildJob): Promise<unknown> {
    if (this.child === undefined || this.jobs >= JOBS_PER_PROCESS) {
      this.child?.kill();
      this.child = this.start();
      this.jobs = 0;
    }
    this.jobs++;
    const child = this.child;
    return new Promise((resolve, reject) => {
      const onMessage = (reply: ChildReply): void => {
        child.off('exit', onExit);
        if (reply.ok) resolve(reply.result);
        else reject(new Error(reply.error));
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        child.off('message', onMessage);
        if (this.child === child) this.child = undefined;
        reject(new Error(`the job's process ${signal === null ? `exited with ${code}` : `was killed (${signal})`}`));
      };
      child.once('message', onMessage);
      child.once('exit', onExit);
      child.send(job);
    });
  }

  private start(): ChildProcess {
    const child = fork(childEntry, [], { execArgv: process.execArgv, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const forward = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') this.log(line);
    };
    child.stdout!.on('data', forward);
    child.stderr!.on('data', forward);
    return child;
  }

  stop(): void {
    this.child?.kill();
    this.child = undefined;
  }
}

/** A worker: takes jobs until closed. `close()` waits for the job in hand. */
export function startWorker(options: WorkerOptions): Worker {
  const connection = redisConnection(options.queue);
  const name = options.queueName ?? DEFAULT_QUEUE_NAME;
  const log = options.log ?? ((): void => {});
  const stall = (options.stallTimeout ?? 30) * 1000;
  const queue = new Queue<JobData>(name, { connection });
  // One job process per concurrent job, kept between jobs.
  const idle: JobProcess[] = [];
  const all: JobProcess[] = [];
  const runChild = async (job: ChildJob): Promise<unknown> => {
    const jobProcess = idle.pop() ?? new JobProcess(log);
    if (!all.includes(jobProcess)) all.push(jobProcess);
    try {
      return await jobProcess.run(job);
    } finally {
      idle.push(jobProcess);
    }
  };
  const worker = new Worker<JobData>(
    name,
    async (job) => {
      const data = job.data;
      if (data.kind === 'release') {
        await queue.addBulk(data.cells.map(cellJob));
        return { released: data.cells.length };
      }
      if (data.kind === 'model') {
        log(`model ${data.model.label} (seed ${data.model.seed}, ${data.model.id}): start`);
        return (await runChild({
          kind: 'model',
          model: data.model,
          needs: data.needs,
          artifacts: options.artifacts,
        })) as ModelRecord;
      }
      const cell = data.cell;
      log(`cell ${cell.id} (${cell.model.label} × ${cell.defense.label}, seed ${cell.seed}): start`);
      const record = (await runChild({ kind: 'cell', cell, artifacts: options.artifacts })) as CellRecord;
      log(`cell ${cell.id}: ${record.status}`);
      return record;
    },
    {
      connection,
      concurrency: options.concurrency ?? 1,
      lockDuration: stall,
      stalledInterval: stall,
      maxStalledCount: 2,
    },
  );
  worker.on('closed', () => {
    for (const jobProcess of all) jobProcess.stop();
    void queue.close();
  });
  return worker;
}
