// The grid's results store: a folder the user names, one small JSON file per cell
// (cells/ID.json: its configuration, its result or its error), the expanded grid
// (grid.json), nothing else. Every write goes through a temporary file and a rename, so a
// crash never leaves a half-written record, and a cell is recorded once: a second record of
// a finished cell is refused.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { writeFileAtomic } from '../io/checkpoint.js';
import type { ResumedFrom } from '../defenses/defense.js';
import type { HeldOutEvidence, Verification } from '../defenses/evidence.js';
import type { CellSpec, Grid } from './grid.js';

export interface Metrics {
  ba: number;
  asr: number | null;
  ra: number | null;
  asr_no_trigger: number | null;
}

/** A backdoored (or clean) model as trained for the grid. */
export interface ModelRecord {
  id: string;
  label: string;
  /** null for a given checkpoint (not trained here; the cell's `before` has its figures). */
  ba: number | null;
  asr: number | null;
  epochs: number;
  seconds: number;
}

interface RecordBase {
  id: string;
  attack: string;
  defense: string;
  method: string;
  seed: number;
  model_id: string;
  /** Seconds the cell took (model training included when this cell trained it). */
  seconds_total: number;
  finished: string;
  host: string;
  /** The CPU that ran the cell ('queue': a record the coordinator wrote); figures are per machine. */
  cpu?: string;
  /** The mcldef commit that ran the cell (null outside a git checkout). Both may be missing in older stores. */
  commit?: string | null;
  spec: CellSpec;
}

export interface DoneRecord extends RecordBase {
  status: 'done';
  model: ModelRecord;
  before: Metrics;
  after: Metrics;
  der: number | null;
  changed: boolean;
  target: number | null;
  detected_target: number | null;
  /** The found trigger on the held-out clean images, before and after (null: evidence 0). */
  evidence?: HeldOutEvidence | null;
  /** The re-scan of the defended model (null unless the cell has `verify`). */
  verification?: Verification | null;
  /** The defense report's seconds by stage (defense, evaluation, load, …). */
  seconds: Record<string, number>;
  /**
   * Where the cell's defense continued from its checkpoint: the rounds and seconds of earlier
   * processes (perhaps on other machines), included in the seconds.
   */
  resumed?: ResumedFrom;
}

export interface FailedRecord extends RecordBase {
  status: 'failed';
  error: string;
}

export type CellRecord = DoneRecord | FailedRecord;

/** The fields every record of `cell` has. */
export function recordBase(cell: CellSpec, host: string): Omit<RecordBase, 'seconds_total' | 'finished'> {
  return {
    id: cell.id,
    attack: cell.model.label,
    defense: cell.defense.label,
    method: cell.defense.name,
    seed: cell.seed,
    model_id: cell.model.id,
    host,
    cpu: host === 'queue' ? 'queue' : (cpus()[0]?.model.trim() ?? 'unknown'),
    commit: codeCommit(),
    spec: cell,
  };
}

let commit: string | null | undefined;
/** HEAD of the git checkout this code runs from, once per process. */
function codeCommit(): string | null {
  if (commit === undefined) {
    try {
      const here = dirname(fileURLToPath(import.meta.url));
      commit = execFileSync('git', ['-C', here, 'rev-parse', 'HEAD'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    } catch {
      commit = null;
    }
  }
  return commit;
}

/** Writes JSON through a temporary file and a rename. */
export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, [Buffer.from(JSON.stringify(value, null, 2) + '\n', 'utf8')]);
}

export class ResultsStore {
  readonly cellsFolder: string;

  constructor(readonly folder: string) {
    this.cellsFolder = join(folder, 'cells');
    mkdirSync(this.cellsFolder, { recursive: true });
  }

  /** Saves the expanded grid (what the report counts as pending). */
  saveGrid(grid: Grid): void {
    writeJsonAtomic(join(this.folder, 'grid.json'), {
      name: grid.name,
      file: grid.file,
      cells: grid.cells.map((cell) => ({
        id: cell.id,
        attack: cell.model.label,
        defense: cell.defense.label,
        seed: cell.seed,
      })),
    });
  }

  /** The cells of the last saved grid (id, attack, defense, seed), or [] before any. */
  gridCells(): { id: string; attack: string; defense: string; seed: number }[] {
    const path = join(this.folder, 'grid.json');
    if (!existsSync(path)) return [];
    return (
      JSON.parse(readFileSync(path, 'utf8')) as {
        cells: { id: string; attack: string; defense: string; seed: number }[];
      }
    ).cells;
  }

  private path(id: string): string {
    if (!/^[0-9a-f]{16}$/.test(id)) throw new Error(`not a cell id: '${id}'`);
    return join(this.cellsFolder, `${id}.json`);
  }

  read(id: string): CellRecord | undefined {
    const path = this.path(id);
    if (!existsSync(path)) return undefined;
    try {
      return JSON.parse(readFileSync(path, 'utf8')) as CellRecord;
    } catch (error) {
      throw new Error(`results store: ${path} is not readable JSON (${(error as Error).message})`);
    }
  }

  /**
   * Records a cell's result; false (and nothing written) when the cell already has a finished
   * record. A failed record is replaced by a new one.
   */
  record(record: CellRecord): boolean {
    const existing = this.read(record.id);
    if (existing?.status === 'done') return false;
    writeJsonAtomic(this.path(record.id), record);
    return true;
  }

  /** Forgets a failed record so that the cell runs again. */
  forgetFailed(id: string): void {
    if (this.read(id)?.status === 'failed') unlinkSync(this.path(id));
  }

  /** Every record in the store. */
  all(): CellRecord[] {
    return readdirSync(this.cellsFolder)
      .filter((name) => /^[0-9a-f]{16}\.json$/.test(name))
      .sort()
      .map((name) => this.read(name.slice(0, 16))!);
  }
}
