// The embedded grid runner: every cell of a grid, one after another, in this process. Cells
// already recorded are skipped (so an interrupted grid resumes where it stopped), a cell that
// fails is recorded with its error and the grid goes on; `retryFailed` runs those again.
import { type CellSelection, type Grid, selectCells } from './grid.js';
import { ensureModel, runCell } from './cell.js';
import { type CellRecord, type ModelRecord, ResultsStore } from './store.js';

export interface GridProgress {
  total: number;
  done: number;
  failed: number;
  running: number;
  /** Seconds to go at the pace of the cells run so far (null before the first). */
  etaSeconds: number | null;
  /** The cell that just started or finished. */
  cell?: { id: string; attack: string; defense: string; seed: number };
  record?: CellRecord;
}

export interface RunGridOptions {
  results: string;
  /** Where trained models go (default RESULTS/artifacts). */
  artifacts?: string;
  retryFailed?: boolean;
  /** Run only these cells now (the store keeps the whole grid). */
  only?: CellSelection;
  threads?: number;
  log?: (line: string) => void;
  progress?: (progress: GridProgress) => void;
}

export interface GridRunSummary {
  total: number;
  ran: number;
  done: number;
  failed: number;
  skipped: number;
  /** Wall time of this run, and the part spent outside the cells (store, bookkeeping). */
  seconds: number;
  overheadSeconds: number;
}

/** Counts of the grid's cells by their record in the store. */
export function gridStatus(grid: Grid, store: ResultsStore): { done: number; failed: number; pending: number } {
  let done = 0;
  let failed = 0;
  for (const cell of grid.cells) {
    const status = store.read(cell.id)?.status;
    if (status === 'done') done++;
    else if (status === 'failed') failed++;
  }
  return { done, failed, pending: grid.cells.length - done - failed };
}

export async function runGrid(wholeGrid: Grid, options: RunGridOptions): Promise<GridRunSummary> {
  const started = performance.now();
  const store = new ResultsStore(options.results);
  const artifacts = options.artifacts ?? `${options.results}/artifacts`;
  store.saveGrid(wholeGrid);
  const grid = selectCells(wholeGrid, options.only);
  if (options.retryFailed === true) for (const cell of grid.cells) store.forgetFailed(cell.id);
  const initial = gridStatus(grid, store);
  let { done, failed } = initial;
  let ran = 0;
  let cellSeconds = 0;
  const eta = (): number | null => (ran === 0 ? null : (cellSeconds / ran) * (grid.cells.length - done - failed));
  for (const cell of grid.cells) {
    if (store.read(cell.id) !== undefined) continue;
    const summary = { id: cell.id, attack: cell.model.label, defense: cell.defense.label, seed: cell.seed };
    options.progress?.({ total: grid.cells.length, done, failed, running: 1, etaSeconds: eta(), cell: summary });
    const cellStarted = performance.now();
    const record = await runCell(cell, {
      artifacts,
      ...(options.log === undefined ? {} : { log: options.log }),
      ...(options.threads === undefined ? {} : { threads: options.threads }),
    });
    cellSeconds += (performance.now() - cellStarted) / 1000;
    ran++;
    store.record(record);
    if (record.status === 'done') done++;
    else failed++;
    options.progress?.({
      total: grid.cells.length,
      done,
      failed,
      running: 0,
      etaSeconds: eta(),
      cell: summary,
      record,
    });
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    total: grid.cells.length,
    ran,
    done,
    failed,
    skipped: grid.cells.length - ran,
    seconds,
    overheadSeconds: seconds - cellSeconds,
  };
}

export interface TrainGridOptions {
  artifacts: string;
  /** Only the models these cells need. */
  only?: CellSelection;
  threads?: number;
  log?: (line: string) => void;
}

/**
 * Every model the grid (or its selected part) needs, trained into the artifacts folder in
 * order (a trojan's clean model before it); models already there are skipped and a model
 * interrupted mid-training resumes. The cells can then run anywhere that folder is.
 */
export function trainGridModels(grid: Grid, options: TrainGridOptions): ModelRecord[] {
  const selected = selectCells(grid, options.only);
  return selected.models.map((model) => ensureModel(model, options.artifacts, options.log, options.threads));
}
