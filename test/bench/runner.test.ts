// The embedded grid runner on a tiny image folder with real training: every cell recorded
// with the values a direct defend run gives, a cell that throws recorded while the grid goes
// on, a runner killed mid-grid resumed without running a finished cell again, and the
// leaderboard written from the store alone.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { modelWeights } from '../../src/bench/cell.js';
import { loadGrid, parseGrid } from '../../src/bench/grid.js';
import { leaderboard, writeLeaderboard } from '../../src/bench/report.js';
import { runGrid } from '../../src/bench/runner.js';
import { type DoneRecord, ResultsStore } from '../../src/bench/store.js';
import { type DefenseEntry, registerDefense, unregisterDefense } from '../../src/defenses/index.js';
import { defendCheckpoint } from '../../src/pipeline/defend-checkpoint.js';
import { temporaryFolder } from '../helpers/tmp.js';
import { tinyGrid } from '../helpers/grid.js';
import { tinyImageFolder } from '../helpers/tiny-data.js';

process.env.MCLDEF_CACHE_DIR = temporaryFolder('mcldef-grid-cache-');
const data = tinyImageFolder({ levels: [50, 120, 200], count: 30, seed: 3 });

const failing: DefenseEntry = {
  name: 'test-fails',
  summary: 'throws, as a defense with a NaN loss would',
  options: {},
  create: () => ({
    name: 'test-fails',
    run: () => {
      throw new Error('loss is NaN at epoch 1');
    },
  }),
};

test('runGrid records every cell; a cell that throws is recorded and the grid goes on; the report reads the store', async () => {
  registerDefense(failing);
  try {
    const results = temporaryFolder('mcldef-grid-results-');
    const grid = parseGrid(tinyGrid('  - name: test-fails\n  - name: ft\n    epochs: 2\n  - name: clp', data));
    assert.equal(grid.cells.length, 6);
    // A part first (--defenses clp): the store keeps the whole grid, the rest is pending.
    const part = await runGrid(grid, { results, threads: 1, only: { defenses: ['clp'] } });
    assert.deepEqual([part.total, part.ran, part.done], [2, 2, 2]);
    const partBoard = await writeLeaderboard(results, temporaryFolder('mcldef-grid-report-'), 'part');
    assert.deepEqual([partBoard.done.length, partBoard.pending], [2, 4]);
    // Side by side: the grid's models and defenses in its order, the pending cells empty.
    assert.deepEqual(partBoard.sideBySide.defenses, ['test-fails', 'ft', 'clp']);
    assert.deepEqual(
      partBoard.sideBySide.rows.map((row) => [row.attack, Object.keys(row.cells).filter((d) => row.cells[d])]),
      [
        ['badnets-square', ['clp']],
        ['clean', ['clp']],
      ],
    );

    const seen: string[] = [];
    const summary = await runGrid(grid, {
      results,
      threads: 1,
      progress: (p) => p.record && seen.push(p.record.status),
    });
    assert.deepEqual([summary.done, summary.failed, summary.ran], [4, 2, 4]);
    assert.deepEqual(seen, ['failed', 'done', 'failed', 'done'], 'the failed cell did not stop the grid');
    const store = new ResultsStore(results);
    const failed = store.all().filter((r) => r.status === 'failed');
    assert.equal(failed.length, 2);
    assert.ok(failed.every((r) => r.status === 'failed' && r.error === 'loss is NaN at epoch 1'));

    // A done cell holds what defend gives on the same model, computed here directly.
    const cell = grid.cells.find((c) => c.defense.name === 'ft' && c.model.attack !== null)!;
    const record = store.read(cell.id) as DoneRecord;
    assert.equal(record.cpu, cpus()[0]!.model.trim());
    assert.equal(record.commit, execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim());
    const direct = await defendCheckpoint({
      weights: modelWeights(join(results, 'artifacts'), cell.model.id),
      data: cell.model.data,
      arch: 'wrn-16-1',
      method: 'ft',
      methodOptions: { epochs: 2 },
      cleanRatio: 0.5,
      attack: 'badnets-square',
      target: 2,
      poisonRate: 0.2,
      detect: true,
      monitor: 0,
      evidence: 0,
      threads: 1,
    });
    direct.model.dispose();
    assert.deepEqual(record.after, direct.report.after);
    assert.deepEqual(record.before, direct.report.before);
    assert.ok(record.before.asr! > 50, `the tiny model is backdoored (ASR ${record.before.asr})`);

    // Run again: nothing to do. --retry-failed: only the failed cells run again.
    const again = await runGrid(grid, { results, threads: 1 });
    assert.equal(again.ran, 0);
    const retried = await runGrid(grid, { results, threads: 1, retryFailed: true });
    assert.equal(retried.ran, 2);
    assert.equal((store.read(cell.id) as DoneRecord).finished, record.finished, 'a done cell is never run twice');

    // The leaderboard from the store alone.
    const out = temporaryFolder('mcldef-grid-report-');
    const board = await writeLeaderboard(results, out, 'tiny grid');
    assert.equal(board.done.length, 4);
    assert.equal(board.failed.length, 2);
    assert.equal(board.pending, 0);
    const dones = store.all().filter((r): r is DoneRecord => r.status === 'done' && r.spec.model.attack !== null);
    const best = dones.reduce((a, b) => (b.der! > a.der! ? b : a));
    assert.deepEqual(board.best, [
      { attack: 'badnets-square', seed: 0, defense: best.defense, der: best.der!, mcldefRank: '-' },
    ]);
    const markdown = readFileSync(join(out, 'leaderboard.md'), 'utf8');
    assert.match(markdown, /4 cells done, 2 failed, 0 pending/);
    assert.ok(
      markdown.includes(`| badnets-square | 0 | ft | ${record.before.ba.toFixed(2)} | ${record.after.ba.toFixed(2)} |`),
    );
    // The side-by-side row of the backdoored model: failed, then FT's cell from its record, then CLP's.
    const residualAfter = record.after.asr! - record.after.asr_no_trigger!;
    const ftCell = `${record.after.ba.toFixed(2)} / ${record.after.asr!.toFixed(1)} (${residualAfter >= 0 ? '+' : ''}${residualAfter.toFixed(1)}), ${record.der!.toFixed(3)}, ${Math.round(record.seconds.defense!)} s`;
    const sideRow = markdown
      .split('\n')
      .find((line) => line.startsWith('| badnets-square |') && line.includes('failed'))!;
    assert.ok(
      sideRow.startsWith(
        `| badnets-square | ${record.before.ba.toFixed(2)} / ${record.before.asr!.toFixed(1)} | failed | ${ftCell} |`,
      ),
      sideRow,
    );
    assert.ok(sideRow.endsWith(`| ${best.defense} ${best.der!.toFixed(3)} | - |`), sideRow);
    const csv = readFileSync(join(out, 'leaderboard.csv'), 'utf8').trim().split('\n');
    assert.equal(csv.length, 1 + 6);
    const ftRow = csv.find((line) => line.startsWith(cell.id))!.split(',');
    assert.equal(Number(ftRow[csv[0]!.split(',').indexOf('asr_after')]), record.after.asr);
    const html = readFileSync(join(out, 'leaderboard.html'), 'utf8');
    assert.equal(html.match(/<svg/g)?.length, 3, 'DER heatmap, BA against ASR, seconds');
    assert.match(html, /loss is NaN at epoch 1/);
  } finally {
    unregisterDefense('test-fails');
  }
});

test('a runner killed mid-grid (SIGKILL) resumes where it stopped: finished cells are not run again', async () => {
  const folder = temporaryFolder('mcldef-grid-kill-');
  const file = join(folder, 'grid.yaml');
  writeFileSync(
    file,
    tinyGrid('  - name: ft\n    epochs: 2\n  - name: clp\n  - name: nad\n    teacher-epochs: 1\n    epochs: 1', data),
  );
  const results = join(folder, 'results');
  const grid = loadGrid(file);
  const cellsFolder = join(results, 'cells');
  const recorded = (): string[] =>
    existsSync(cellsFolder) ? readdirSync(cellsFolder).filter((n) => n.endsWith('.json')) : [];
  const cli = [
    '--import',
    'tsx',
    'src/cli/main.ts',
    'bench',
    'run',
    file,
    '--results',
    results,
    '--threads',
    '1',
    '--quiet',
  ];
  // Kill the runner as soon as its first cell is recorded (the second is then under way).
  const child = spawn(process.execPath, cli, { stdio: 'ignore' });
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (recorded().length >= 1) {
        child.kill('SIGKILL');
        clearInterval(timer);
        resolve();
      }
    }, 20);
  });
  await new Promise((resolve) => child.once('exit', resolve));
  const before = new Map(recorded().map((name) => [name, readFileSync(join(cellsFolder, name), 'utf8')]));
  assert.ok(before.size >= 1 && before.size < grid.cells.length, `killed mid-grid (${before.size} recorded)`);
  for (const text of before.values()) assert.equal(JSON.parse(text).status, 'done', 'every record is whole');
  const resumed = spawn(process.execPath, cli, { stdio: 'ignore' });
  const code = await new Promise((resolve) => resumed.once('exit', resolve));
  assert.equal(code, 0);
  const after = recorded();
  assert.equal(after.length, grid.cells.length);
  for (const [name, text] of before)
    assert.equal(readFileSync(join(cellsFolder, name), 'utf8'), text, `${name} untouched`);
  const board = leaderboard(new ResultsStore(results));
  assert.equal(board.done.length, grid.cells.length);
});
