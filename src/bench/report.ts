// The leaderboard of a results store, at any time (a grid still running included): Markdown,
// CSV and a self-contained HTML page with a DER heatmap (defense × attack), BA against ASR
// per attack and the seconds of each cell. Reads the store alone.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { writeFileAtomic } from '../io/checkpoint.js';
import { renderVegaLite } from '../report/charts.js';
import { escape } from '../report/html.js';
import { type CellRecord, type DoneRecord, ResultsStore } from './store.js';

export interface Leaderboard {
  done: DoneRecord[];
  failed: Extract<CellRecord, { status: 'failed' }>[];
  /** Cells of the store's grid without a record yet. */
  pending: number;
  /** Per attack (and seed): the defense with the best DER and MCLDef's rank. */
  best: { attack: string; seed: number; defense: string; der: number; mcldefRank: string }[];
  /** One row per model (attack and seed) and one column per defense, in the grid's order. */
  sideBySide: SideBySide;
}

/** The comparison as a paper prints it: each model's row, each defense's cell. */
export interface SideBySide {
  defenses: string[];
  rows: {
    attack: string;
    seed: number;
    /** The model before any defense (null while none of its cells is done). */
    before: DoneRecord['before'] | null;
    /** By defense label: the record, or undefined while the cell is pending. */
    cells: Record<string, CellRecord | undefined>;
  }[];
}

const fmt = (value: number | null | undefined, digits = 2): string =>
  value === null || value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits);

/** ASR above the rate without the trigger: what the backdoor itself still adds. */
const residual = (m: DoneRecord['after']): number | null =>
  m.asr === null || m.asr_no_trigger === null ? null : m.asr - m.asr_no_trigger;

export function leaderboard(store: ResultsStore): Leaderboard {
  // The cells of the grid last run into this store (older configurations' records stay in the
  // store, out of the leaderboard); every record when no grid was saved.
  const gridIds = new Set(store.gridCells().map((cell) => cell.id));
  const records = store.all().filter((record) => gridIds.size === 0 || gridIds.has(record.id));
  const done = records.filter((r): r is DoneRecord => r.status === 'done');
  const failed = records.filter((r): r is Leaderboard['failed'][number] => r.status === 'failed');
  const recorded = new Set(records.map((r) => r.id));
  const pending = store.gridCells().filter((cell) => !recorded.has(cell.id)).length;
  const groups = new Map<string, DoneRecord[]>();
  for (const record of done) {
    const key = `${record.attack}\u0000${record.seed}`;
    groups.set(key, [...(groups.get(key) ?? []), record]);
  }
  const best: Leaderboard['best'] = [];
  for (const group of groups.values()) {
    // A clean model has no backdoor to remove: it shows what each defense costs, not a ranking.
    if (group[0]!.spec.model.attack === null) continue;
    const ranked = group.filter((r) => r.der !== null).sort((a, b) => b.der! - a.der!);
    if (ranked.length === 0) continue;
    const rank = ranked.findIndex((r) => r.method === 'mcldef');
    best.push({
      attack: ranked[0]!.attack,
      seed: ranked[0]!.seed,
      defense: ranked[0]!.defense,
      der: ranked[0]!.der!,
      mcldefRank: rank < 0 ? '-' : `${rank + 1} of ${ranked.length}`,
    });
  }
  const order = (a: DoneRecord, b: DoneRecord): number =>
    a.attack.localeCompare(b.attack) || a.seed - b.seed || a.defense.localeCompare(b.defense);
  return { done: done.sort(order), failed, pending, best, sideBySide: sideBySide(store.gridCells(), records) };
}

function sideBySide(
  gridCells: { id: string; attack: string; defense: string; seed: number }[],
  records: CellRecord[],
): SideBySide {
  // The grid's order (models, then defenses, as the grid file lists them); the records' own without a grid.
  const cells = gridCells.length > 0 ? gridCells : records;
  const byId = new Map(records.map((r) => [r.id, r]));
  const defenses = [...new Set(cells.map((c) => c.defense))];
  const rows = new Map<string, SideBySide['rows'][number]>();
  for (const cell of cells) {
    const key = `${cell.attack}\u0000${cell.seed}`;
    let row = rows.get(key);
    if (row === undefined) {
      row = { attack: cell.attack, seed: cell.seed, before: null, cells: {} };
      rows.set(key, row);
    }
    const record = byId.get(cell.id);
    row.cells[cell.defense] = record;
    if (record?.status === 'done') row.before ??= record.before;
  }
  return { defenses, rows: [...rows.values()] };
}

/** One cell of the side-by-side table: BA / ASR after (residual), DER, the defense's seconds. */
function sideBySideCell(record: CellRecord | undefined): string {
  if (record === undefined) return '–';
  if (record.status === 'failed') return 'failed';
  const res = residual(record.after);
  const signed = res === null ? '' : ` (${res >= 0 ? '+' : ''}${res.toFixed(1)})`;
  const asr = record.after.asr === null ? '-' : record.after.asr.toFixed(1);
  const seconds = Math.round(record.seconds.defense ?? record.seconds_total);
  return `${fmt(record.after.ba)} / ${asr}${signed}, ${fmt(record.der, 3)}, ${seconds} s${record.changed ? '' : ' ='}`;
}

/** The side-by-side table's header and rows (with each backdoored row's best DER and MCLDef's rank). */
export function sideBySideTable(board: Leaderboard): { header: string[]; body: string[][] } {
  const { defenses, rows } = board.sideBySide;
  const seeds = new Set(rows.map((r) => r.seed)).size > 1;
  const header = ['model', ...(seeds ? ['seed'] : []), 'before BA / ASR', ...defenses, 'best DER', 'MCLDef rank'];
  const body = rows.map((row) => {
    const best = board.best.find((b) => b.attack === row.attack && b.seed === row.seed);
    const before =
      row.before === null
        ? '–'
        : `${fmt(row.before.ba)} / ${row.before.asr === null ? '-' : row.before.asr.toFixed(1)}`;
    return [
      row.attack,
      ...(seeds ? [String(row.seed)] : []),
      before,
      ...defenses.map((d) => sideBySideCell(row.cells[d])),
      best === undefined ? '–' : `${best.defense} ${fmt(best.der, 3)}`,
      best === undefined ? '–' : best.mcldefRank,
    ];
  });
  return { header, body };
}

const SIDE_BY_SIDE_KEY =
  'Each cell: BA / ASR after (residual), DER, the defense\'s own seconds; "=": the defense left the model unchanged; "–": not run yet.';

const HEADER = [
  'attack',
  'seed',
  'defense',
  'BA before',
  'BA after',
  'ASR before',
  'ASR after',
  'residual after',
  'DER',
  'defense s',
];

function rows(board: Leaderboard): string[][] {
  return board.done.map((r) => [
    r.attack,
    String(r.seed),
    r.changed ? r.defense : `${r.defense} (unchanged)`,
    fmt(r.before.ba),
    fmt(r.after.ba),
    fmt(r.before.asr),
    fmt(r.after.asr),
    fmt(residual(r.after)),
    fmt(r.der, 3),
    fmt(r.seconds.defense ?? r.seconds_total, 0),
  ]);
}

export function leaderboardMarkdown(board: Leaderboard, title: string): string {
  const table = (header: string[], body: string[][]): string =>
    [
      `| ${header.join(' | ')} |`,
      `|${header.map(() => '---').join('|')}|`,
      ...body.map((row) => `| ${row.join(' | ')} |`),
    ].join('\n');
  const parts = [
    `# ${title}`,
    '',
    `${board.done.length} cells done, ${board.failed.length} failed, ${board.pending} pending. BA and ASR in %, on the whole test split; residual: ASR − the rate without the trigger; DER: defense effectiveness rating.`,
    '',
    '## Side by side',
    '',
    SIDE_BY_SIDE_KEY,
    '',
    table(sideBySideTable(board).header, sideBySideTable(board).body),
    '',
    '## Every cell',
    '',
    table(HEADER, rows(board)),
  ];
  if (board.best.length > 0) {
    parts.push(
      '',
      '## Best DER per attack',
      '',
      table(
        ['attack', 'seed', 'best defense', 'DER', "MCLDef's rank"],
        board.best.map((b) => [b.attack, String(b.seed), b.defense, fmt(b.der, 3), b.mcldefRank]),
      ),
    );
  }
  if (board.failed.length > 0) {
    parts.push(
      '',
      '## Failed cells',
      '',
      ...board.failed.map((f) => `- ${f.attack} × ${f.defense} (seed ${f.seed}, ${f.id}): ${f.error}`),
    );
  }
  return parts.join('\n') + '\n';
}

const csvField = (text: string): string => (/[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);

export function leaderboardCsv(store: ResultsStore): string {
  const header = [
    'id',
    'attack',
    'defense',
    'method',
    'seed',
    'status',
    'ba_before',
    'asr_before',
    'ba_after',
    'asr_after',
    'asr_no_trigger_after',
    'der',
    'changed',
    'defense_seconds',
    'total_seconds',
    'detected_target',
    'cpu',
    'commit',
    'error',
  ];
  const gridIds = new Set(store.gridCells().map((cell) => cell.id));
  const lines = store
    .all()
    .filter((r) => gridIds.size === 0 || gridIds.has(r.id))
    .map((r) => {
      const done = r.status === 'done' ? r : undefined;
      const value = (x: number | null | undefined): string => (x === null || x === undefined ? '' : String(x));
      return [
        r.id,
        r.attack,
        r.defense,
        r.method,
        String(r.seed),
        r.status,
        value(done?.before.ba),
        value(done?.before.asr),
        value(done?.after.ba),
        value(done?.after.asr),
        value(done?.after.asr_no_trigger),
        value(done?.der),
        done === undefined ? '' : String(done.changed),
        value(done?.seconds.defense),
        value(r.seconds_total),
        value(done?.detected_target),
        r.cpu ?? '',
        r.commit ?? '',
        r.status === 'failed' ? r.error : '',
      ]
        .map(csvField)
        .join(',');
    });
  return [header.join(','), ...lines].join('\n') + '\n';
}

export async function leaderboardHtml(board: Leaderboard, title: string): Promise<string> {
  const values = board.done.map((r) => ({
    clean: r.spec.model.attack === null,
    attack: r.attack,
    defense: r.defense,
    seed: r.seed,
    der: r.der,
    ba: r.after.ba,
    asr: r.after.asr,
    seconds: r.seconds.defense ?? r.seconds_total,
  }));
  const charts: string[] = [];
  if (values.length > 0) {
    const withDer = values.filter((v) => v.der !== null && !v.clean);
    if (withDer.length > 0) {
      charts.push(
        '<h2>DER by defense and attack</h2>',
        await renderVegaLite({
          $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
          data: { values: withDer },
          // Cells wide enough for their two-decimal label.
          width: { step: 44 },
          height: { step: 24 },
          encoding: {
            x: { field: 'defense', type: 'nominal', title: 'defense', axis: { labelAngle: 0 } },
            y: { field: 'attack', type: 'nominal', title: 'attack' },
          },
          layer: [
            {
              mark: 'rect',
              encoding: {
                color: {
                  aggregate: 'mean',
                  field: 'der',
                  type: 'quantitative',
                  title: 'DER',
                  scale: { domain: [0, 1], scheme: 'viridis' },
                },
              },
            },
            {
              mark: { type: 'text', fontSize: 11 },
              encoding: {
                text: { aggregate: 'mean', field: 'der', type: 'quantitative', format: '.2f' },
                // Dark text on viridis' light end.
                color: { condition: { test: 'datum.mean_der > 0.7', value: 'black' }, value: 'white' },
              },
            },
          ],
        }),
      );
    }
    const withAsr = values.filter((v) => v.asr !== null);
    if (withAsr.length > 0) {
      charts.push(
        '<h2>BA against ASR after each defense, per attack</h2>',
        await renderVegaLite({
          $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
          data: { values: withAsr },
          facet: { field: 'attack', type: 'nominal', title: null },
          columns: 4,
          spec: {
            width: 180,
            height: 150,
            mark: { type: 'point', filled: true, size: 60 },
            encoding: {
              x: { field: 'asr', type: 'quantitative', title: 'ASR after (%)', scale: { domain: [0, 100] } },
              y: { field: 'ba', type: 'quantitative', title: 'BA after (%)', scale: { zero: false } },
              color: { field: 'defense', type: 'nominal' },
              shape: { field: 'defense', type: 'nominal' },
            },
          },
        }),
      );
    }
    charts.push(
      '<h2>Seconds per cell (the defense alone)</h2>',
      await renderVegaLite({
        $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
        data: { values },
        mark: 'bar',
        encoding: {
          x: { field: 'defense', type: 'nominal', title: 'defense', axis: { labelAngle: 0 } },
          xOffset: { field: 'attack', type: 'nominal' },
          y: { field: 'seconds', type: 'quantitative', title: 'seconds', scale: { type: 'symlog' } },
          color: { field: 'attack', type: 'nominal' },
        },
      }),
    );
  }
  const table = (header: string[], body: string[][]): string =>
    `<table><tr>${header.map((h) => `<th>${escape(h)}</th>`).join('')}</tr>${body
      .map((row) => `<tr>${row.map((cell) => `<td>${escape(cell)}</td>`).join('')}</tr>`)
      .join('')}</table>`;
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}td:first-child,td:nth-child(3){text-align:left}</style>
</head><body>
<h1>${escape(title)}</h1>
<p>${board.done.length} cells done, ${board.failed.length} failed, ${board.pending} pending. BA and ASR in %, on the whole test split; residual: ASR − the rate without the trigger; DER: defense effectiveness rating, higher is better.</p>
<h2>Side by side</h2>
<p>${escape(SIDE_BY_SIDE_KEY)}</p>
${table(sideBySideTable(board).header, sideBySideTable(board).body)}
${charts.join('\n')}
<h2>Every cell</h2>
${table(HEADER, rows(board))}
${
  board.best.length === 0
    ? ''
    : `<h2>Best DER per attack</h2>${table(
        ['attack', 'seed', 'best defense', 'DER', "MCLDef's rank"],
        board.best.map((b) => [b.attack, String(b.seed), b.defense, fmt(b.der, 3), b.mcldefRank]),
      )}`
}
${board.failed.length === 0 ? '' : `<h2>Failed cells</h2><ul>${board.failed.map((f) => `<li>${escape(`${f.attack} × ${f.defense} (seed ${f.seed}): ${f.error}`)}</li>`).join('')}</ul>`}
</body></html>
`;
}

/** Writes leaderboard.md, leaderboard.csv and leaderboard.html into `out`. */
export async function writeLeaderboard(
  results: string,
  out: string,
  title = 'mcldef leaderboard',
): Promise<Leaderboard> {
  if (!existsSync(join(results, 'cells'))) throw new Error(`${results}: not a results store (no cells/ folder)`);
  const store = new ResultsStore(results);
  const board = leaderboard(store);
  mkdirSync(out, { recursive: true });
  const write = (name: string, text: string): void => writeFileAtomic(join(out, name), [Buffer.from(text, 'utf8')]);
  write('leaderboard.md', leaderboardMarkdown(board, title));
  write('leaderboard.csv', leaderboardCsv(store));
  write('leaderboard.html', await leaderboardHtml(board, title));
  return board;
}
