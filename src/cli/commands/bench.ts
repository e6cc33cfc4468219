// mcldef bench: the comparison grid from one file (src/bench). `run` runs it here or, with
// --queue, on workers; `cell` and `model` run one of its jobs (what Slurm tasks call);
// `slurm` writes the sbatch arrays; `report` writes the leaderboard; `list` shows the cells.
import { resolve } from 'node:path';

import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';

import { ensureModel, runCell } from '../../bench/cell.js';
import { type CellSelection, type Grid, loadGrid, selectCells } from '../../bench/grid.js';
import { runGridOnQueue } from '../../bench/queue.js';
import { writeLeaderboard } from '../../bench/report.js';
import { type GridProgress, type GridRunSummary, gridStatus, runGrid, trainGridModels } from '../../bench/runner.js';
import { writeSlurmScripts } from '../../bench/slurm.js';
import { ResultsStore } from '../../bench/store.js';
import { UsageError, integer, runAction } from '../common.js';

interface StoreFlags {
  results: string;
  artifacts?: string;
  quiet?: boolean;
}

const artifactsOf = (flags: StoreFlags): string => resolve(flags.artifacts ?? `${flags.results}/artifacts`);
const print = (line: string): void => void process.stdout.write(`${line}\n`);

function storeOptions(command: Command, resultsRequired = true): Command {
  const results = new Option('--results <dir>', 'the results store: one JSON file per cell (created if missing)');
  if (resultsRequired) results.makeOptionMandatory();
  return command
    .addOption(results)
    .addOption(
      new Option(
        '--artifacts <dir>',
        'where trained models go and are found (shared by every machine; default RESULTS/artifacts)',
      ),
    )
    .addOption(new Option('--quiet', 'no progress output; results and errors still print'));
}

interface SelectionFlags {
  models?: string[];
  defenses?: string[];
  seeds?: number[];
}

const labels = (value: string, previous: string[] = []): string[] => [
  ...previous,
  ...value.split(',').filter((label) => label !== ''),
];

/** --models, --defenses, --seeds: a part of the grid (ids stay the whole grid's). */
function selectionOptions(command: Command): Command {
  const seeds = integer('--seeds', 0);
  return command
    .addOption(
      new Option('--models <labels>', 'only the cells of these models (comma-separated labels)').argParser(labels),
    )
    .addOption(
      new Option('--defenses <labels>', 'only the cells of these defenses (comma-separated labels)').argParser(labels),
    )
    .addOption(
      new Option('--seeds <n,...>', 'only the cells of these seeds').argParser(
        (value: string, previous: number[] = []) => [...previous, ...value.split(',').map(seeds)],
      ),
    );
}

const selectionOf = (flags: SelectionFlags): CellSelection => ({
  ...(flags.models === undefined ? {} : { models: flags.models }),
  ...(flags.defenses === undefined ? {} : { defenses: flags.defenses }),
  ...(flags.seeds === undefined ? {} : { seeds: flags.seeds }),
});

const duration = (seconds: number | null): string => {
  if (seconds === null) return '?';
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
    : s >= 60
      ? `${Math.floor(s / 60)} min ${s % 60} s`
      : `${s} s`;
};

/** Progress over the grid: a bar on a terminal, else one line per finished cell. */
function gridProgress(grid: Grid, quiet: boolean): { update: (p: GridProgress) => void; stop: () => void } {
  if (quiet) return { update: () => {}, stop: () => {} };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format:
          'grid |{bar}| {value}/{total} cells done | {failed} failed | {running} running | ETA {eta_text} | {last}',
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(grid.cells.length, 0, { failed: 0, running: 0, eta_text: '?', last: '' });
    return {
      update: (p) =>
        bar.update(p.done, {
          failed: p.failed,
          running: p.running,
          eta_text: duration(p.etaSeconds),
          last: p.cell === undefined ? '' : `${p.cell.attack} × ${p.cell.defense}`,
        }),
      stop: () => bar.stop(),
    };
  }
  return {
    update: (p) => {
      if (p.record === undefined || p.cell === undefined) return;
      const r = p.record;
      const result =
        r.status === 'done'
          ? `BA ${r.after.ba.toFixed(2)}%${r.after.asr === null ? '' : ` ASR ${r.after.asr.toFixed(2)}%`} DER ${r.der === null ? '-' : r.der.toFixed(3)}`
          : `failed: ${r.error}`;
      process.stderr.write(
        `[${p.done + p.failed}/${p.total}] ${p.cell.attack} × ${p.cell.defense} (seed ${p.cell.seed}): ${result} (${r.seconds_total.toFixed(0)} s; ETA ${duration(p.etaSeconds)})\n`,
      );
    },
    stop: () => {},
  };
}

function summaryLine(summary: GridRunSummary, results: string): string {
  return `grid: ${summary.done} of ${summary.total} cells done, ${summary.failed} failed; ran ${summary.ran} now in ${duration(summary.seconds)} (the runner's own share ${summary.overheadSeconds.toFixed(1)} s); results in ${results}`;
}

interface RunFlags extends StoreFlags, SelectionFlags {
  retryFailed?: boolean;
  queue?: string;
  queueName?: string;
  threads?: number;
}

function runSubcommand(): Command {
  const command = new Command('run')
    .description('run every cell of a grid file not yet in the store (resumes an interrupted grid)')
    .argument('<grid>', 'the grid file (YAML or JSON)');
  selectionOptions(storeOptions(command))
    .addOption(new Option('--retry-failed', 'run the cells recorded as failed again'))
    .addOption(
      new Option('--queue <url>', 'put the cells on a BullMQ queue in Redis (redis://HOST:PORT) for `mcldef worker`s'),
    )
    .addOption(new Option('--queue-name <name>', 'the queue (default mcldef-grid)'))
    .addOption(
      new Option('--threads <n>', 'CPU threads for libtorch (default: every core)').argParser(integer('--threads', 1)),
    );
  return command.action((file: string, flags: RunFlags) =>
    runAction(async () => {
      const grid = loadGrid(file);
      const only = selectionOf(flags);
      const progress = gridProgress(selectCells(grid, only), flags.quiet === true);
      const log = flags.quiet === true ? undefined : (line: string): void => void process.stderr.write(`${line}\n`);
      let summary: GridRunSummary;
      try {
        summary =
          flags.queue === undefined
            ? await runGrid(grid, {
                results: flags.results,
                artifacts: artifactsOf(flags),
                retryFailed: flags.retryFailed === true,
                only,
                ...(flags.threads === undefined ? {} : { threads: flags.threads }),
                ...(log === undefined ? {} : { log }),
                progress: progress.update,
              })
            : await runGridOnQueue(grid, {
                queue: flags.queue,
                ...(flags.queueName === undefined ? {} : { queueName: flags.queueName }),
                results: flags.results,
                retryFailed: flags.retryFailed === true,
                only,
                ...(log === undefined ? {} : { log }),
                progress: progress.update,
              });
      } finally {
        progress.stop();
      }
      print(summaryLine(summary, flags.results));
      if (summary.failed > 0) process.exitCode = 1;
    }),
  );
}

interface JobFlags extends StoreFlags {
  grid: string;
}

function cellSubcommand(): Command {
  const command = new Command('cell')
    .description('run one cell of a grid by its id (what each Slurm task runs) and record it')
    .argument('<id>', 'the cell id (mcldef bench list GRID)')
    .addOption(new Option('--grid <file>', 'the grid file').makeOptionMandatory());
  storeOptions(command);
  return command.action((id: string, flags: JobFlags) =>
    runAction(async () => {
      const grid = loadGrid(flags.grid);
      const cell = grid.cells.find((candidate) => candidate.id === id);
      if (cell === undefined)
        throw new UsageError(`no cell '${id}' in ${flags.grid} (mcldef bench list ${flags.grid})`);
      const store = new ResultsStore(flags.results);
      if (store.read(id)?.status === 'done') {
        print(`cell ${id}: already done`);
        return;
      }
      const record = await runCell(cell, {
        artifacts: artifactsOf(flags),
        ...(flags.quiet === true ? {} : { log: print }),
      });
      store.record(record);
      print(
        `cell ${id} (${cell.model.label} × ${cell.defense.label}, seed ${cell.seed}): ${record.status === 'done' ? `BA ${record.after.ba.toFixed(2)}%, ASR ${record.after.asr?.toFixed(2) ?? '-'}%, DER ${record.der?.toFixed(3) ?? '-'}` : `failed: ${record.error}`}`,
      );
      if (record.status === 'failed') process.exitCode = 1;
    }),
  );
}

function modelSubcommand(): Command {
  const command = new Command('model')
    .description('train one model of a grid by its id into the artifacts folder (the first Slurm array)')
    .argument('<id>', 'the model id (mcldef bench list GRID)')
    .addOption(new Option('--grid <file>', 'the grid file').makeOptionMandatory());
  storeOptions(command, false);
  return command.action((id: string, flags: JobFlags) =>
    runAction(() => {
      if (flags.artifacts === undefined && flags.results === undefined) {
        throw new UsageError('give --artifacts DIR (or --results DIR, whose artifacts/ is used)');
      }
      const grid = loadGrid(flags.grid);
      const model = grid.models.find((candidate) => candidate.id === id);
      if (model === undefined)
        throw new UsageError(`no model '${id}' in ${flags.grid} (mcldef bench list ${flags.grid})`);
      const needs = grid.cells.find((cell) => cell.model.id === id)?.needs ?? [];
      const log = flags.quiet === true ? undefined : print;
      for (const needed of needs) ensureModel(needed, artifactsOf(flags), log);
      const record = ensureModel(model, artifactsOf(flags), log);
      print(
        record.ba === null
          ? `model ${id} (${model.label}): the given checkpoint ${model.weights?.path}, nothing to train`
          : `model ${id} (${model.label}, seed ${model.seed}): BA ${record.ba.toFixed(2)}%${record.asr === null ? '' : `, ASR ${record.asr.toFixed(2)}%`}`,
      );
    }),
  );
}

function trainSubcommand(): Command {
  const command = new Command('train')
    .description('train every model a grid (or a part of it) needs into the artifacts folder; runs no cell')
    .argument('<grid>', 'the grid file')
    .addOption(
      new Option('--threads <n>', 'CPU threads for libtorch (default: every core)').argParser(integer('--threads', 1)),
    );
  selectionOptions(storeOptions(command, false));
  return command.action((file: string, flags: Partial<StoreFlags> & SelectionFlags & { threads?: number }) =>
    runAction(() => {
      if (flags.artifacts === undefined && flags.results === undefined) {
        throw new UsageError('give --artifacts DIR (or --results DIR, whose artifacts/ is used)');
      }
      const grid = selectCells(loadGrid(file), selectionOf(flags));
      const artifacts = artifactsOf(flags as StoreFlags);
      const records = trainGridModels(grid, {
        artifacts,
        ...(flags.threads === undefined ? {} : { threads: flags.threads }),
        ...(flags.quiet === true ? {} : { log: print }),
      });
      const percent = (value: number | null): string => (value === null ? '-' : `${value.toFixed(2)}%`);
      print('| model | id | BA | ASR | epochs | seconds |');
      print('| --- | --- | --- | --- | --- | --- |');
      for (const record of records) {
        print(
          `| ${record.label} | ${record.id} | ${percent(record.ba)} | ${percent(record.asr)} | ${record.epochs} | ${record.seconds.toFixed(0)} |`,
        );
      }
      print(`${records.length} models in ${artifacts}/models`);
    }),
  );
}

interface SlurmFlags extends StoreFlags, SelectionFlags {
  out?: string;
  command?: string;
  sbatch?: string[];
  cpus?: number;
}

function slurmSubcommand(): Command {
  const command = new Command('slurm')
    .description('write sbatch array scripts for a grid: the models, then the cells (submit.sh submits both)')
    .argument('<grid>', 'the grid file');
  selectionOptions(storeOptions(command))
    .addOption(new Option('--out <dir>', 'where the scripts go (default RESULTS/slurm)'))
    .addOption(new Option('--command <cmd>', "how the nodes run mcldef (default 'mcldef')"))
    .addOption(new Option('--sbatch <line...>', "extra #SBATCH lines, e.g. '--partition=cpu' '--time=04:00:00'"))
    .addOption(new Option('--cpus <n>', 'CPUs per task (default 8)').argParser(integer('--cpus', 1)));
  return command.action((file: string, flags: SlurmFlags) =>
    runAction(() => {
      const scripts = writeSlurmScripts(loadGrid(file), {
        results: flags.results,
        artifacts: artifactsOf(flags),
        ...(flags.out === undefined ? {} : { out: flags.out }),
        ...(flags.command === undefined ? {} : { command: flags.command }),
        ...(flags.sbatch === undefined ? {} : { sbatch: flags.sbatch }),
        ...(flags.cpus === undefined ? {} : { cpus: flags.cpus }),
        only: selectionOf(flags),
      });
      print(
        `wrote ${scripts.models} (${scripts.modelCount} models), ${scripts.cells} (${scripts.cellCount} cells) and ${scripts.submit}; run: bash ${scripts.submit}`,
      );
    }),
  );
}

function reportSubcommand(): Command {
  return new Command('report')
    .description('write the leaderboard (Markdown, CSV, HTML with charts) from a results store, at any time')
    .addOption(new Option('--results <dir>', 'the results store').makeOptionMandatory())
    .addOption(new Option('--out <dir>', 'where leaderboard.{md,csv,html} go').makeOptionMandatory())
    .addOption(new Option('--title <text>', 'the page title').default('mcldef leaderboard'))
    .action((flags: { results: string; out: string; title: string }) =>
      runAction(async () => {
        const board = await writeLeaderboard(flags.results, flags.out, flags.title);
        print(
          `leaderboard of ${board.done.length} done, ${board.failed.length} failed, ${board.pending} pending cells: ${flags.out}/leaderboard.{md,csv,html}`,
        );
      }),
    );
}

function listSubcommand(): Command {
  const command = new Command('list')
    .description("a grid's models and cells with their ids (and, with --results, each cell's status)")
    .argument('<grid>', 'the grid file')
    .addOption(new Option('--results <dir>', 'the results store to read the status from'));
  return selectionOptions(command).action((file: string, flags: SelectionFlags & { results?: string }) =>
    runAction(() => {
      const grid = selectCells(loadGrid(file), selectionOf(flags));
      const store = flags.results === undefined ? undefined : new ResultsStore(flags.results);
      print(`${grid.name}: ${grid.models.length} models, ${grid.cells.length} cells`);
      for (const model of grid.models) {
        const trained =
          model.weights === null ? `seed ${model.seed}, ${model.epochs} epochs` : `given: ${model.weights.path}`;
        print(`model ${model.id}  ${model.label} (${trained})`);
      }
      for (const cell of grid.cells) {
        const status = store?.read(cell.id)?.status ?? (store === undefined ? '' : 'pending');
        print(
          `cell  ${cell.id}  ${cell.model.label} × ${cell.defense.label} (seed ${cell.seed})${status === '' ? '' : `  ${status}`}`,
        );
      }
      if (store !== undefined) {
        const status = gridStatus(grid, store);
        print(`${status.done} done, ${status.failed} failed, ${status.pending} pending`);
      }
    }),
  );
}

export function benchCommand(): Command {
  return new Command('bench')
    .description('comparison grids from one file: run (here or on workers), one cell, Slurm scripts, the leaderboard')
    .addCommand(runSubcommand())
    .addCommand(cellSubcommand())
    .addCommand(modelSubcommand())
    .addCommand(trainSubcommand())
    .addCommand(slurmSubcommand())
    .addCommand(reportSubcommand())
    .addCommand(listSubcommand());
}
