// A self-contained report.html for `mcldef defend`: the before/after table, the inverted
// trigger, and BA/ASR per purification epoch drawn by Vega-Lite (rendered to inline SVG,
// so the page needs no network and no script).
import { compile } from 'vega-lite';

import { renderSvg } from './charts.js';

import type { HeldOutEvidence, TriggerReading, Verification } from '../defenses/evidence.js';
import type { DefendReport } from '../defenses/pipeline.js';

/** What the report reads: a defense run's report (src/defenses/pipeline.ts). */
export type DefenseReport = Pick<
  DefendReport,
  | 'method'
  | 'model'
  | 'data'
  | 'attack'
  | 'target'
  | 'detected_target'
  | 'before'
  | 'after'
  | 'der'
  | 'seconds'
  | 'epochs'
> & {
  changed?: boolean;
  reason?: string;
  /** The found trigger on held-out clean images, before and after. */
  evidence?: HeldOutEvidence | null;
  /** The detection scan before and after (--verify). */
  verification?: Verification | null;
  /** The run's answer in words. */
  verdict?: string[];
  /** Settings that differ from the published configuration, e.g. {refit_head: true}. */
  changes_from_published?: Record<string, number | boolean | string>;
  /** What the clean-accuracy guard measured (%) and did, where it was on. */
  accuracy_guard?: { tolerance: number; before: number; after: number; refit_head: boolean };
  /** MCLDef's detection scan, where the target was detected. */
  detection?: {
    flaggedBy: string | null;
    classes: {
      label: number;
      size: number;
      anomalyIndex: number;
      warpIndex: number | null;
      signalIndex: number | null;
      /** The features' evidence of the size scan's trigger (FeatureEvidence). */
      features?: { separation: number; spreadRatio: number; reach: number } | null;
      separationRatio?: number | null;
      stability?: number | null;
    }[];
    /** Why the decision is what it is, one sentence. */
    decidedBy?: string;
  };
};

/** The detection scan per class: the statistics the decision was made on. */
function detectionTable(detection: DefenseReport['detection'], target: number | null): string {
  if (detection === undefined) return '';
  const fixed = (value: number | null | undefined): string =>
    value === null || value === undefined ? '–' : value.toFixed(2);
  const rows = detection.classes
    .map(
      (c) =>
        `<tr${c.label === target ? ' class="flagged"' : ''}><th>${c.label}</th><td>${c.size.toFixed(0)}</td><td>${fixed(c.anomalyIndex)}</td><td>${fixed(c.stability)}</td><td>${fixed(c.features?.separation)}</td><td>${fixed(c.separationRatio)}</td><td>${fixed(c.warpIndex)}</td><td>${fixed(c.signalIndex)}</td></tr>`,
    )
    .join('\n');
  const decided =
    detection.decidedBy ??
    (detection.flaggedBy === null ? 'None was flagged.' : `This one by the ${detection.flaggedBy} scan.`);
  return `<h2>Detection scan</h2>
<table><tr><th>class</th><th>trigger size</th><th>size index</th><th>agreement of restarts</th><th>feature separation</th><th>over the median</th><th>warp index</th><th>signal index</th></tr>
${rows}
</table>
<p class="muted">A class is flagged where its inverted trigger is anomalously small (size index above 2) and inversions from other random starts find it again (agreement: the largest cosine between two of its patterns, at least 0.5), or its trigger's images sit apart from the class's clean ones in feature space (separation at least the median's), or its trigger is at most a tenth of the median size, or where a warp or stripe reaches it anomalously easily (warp or signal index above 2). Feature separation: how far the images its trigger stamps sit from the class's clean images in feature space, in units of their spread. ${escape(decided)}</p>`;
}

/** Each class's index before and after the defense, one chart (SVG). */
export async function verificationChart(verification: Verification): Promise<string> {
  const { statistic } = verification;
  const values = (['before', 'after'] as const).flatMap((when) => {
    const scan = verification[when];
    const indices = scan?.indices[statistic] ?? null;
    return indices === null ? [] : indices.map((index, label) => ({ class: label, when, index }));
  });
  const spec = compile({
    width: 520,
    height: 220,
    data: { values },
    layer: [
      {
        mark: 'bar',
        encoding: {
          x: { field: 'class', type: 'ordinal', title: 'class', axis: { labelAngle: 0 } },
          xOffset: { field: 'when', type: 'nominal', sort: ['before', 'after'] },
          y: { field: 'index', type: 'quantitative', title: `${statistic} anomaly index` },
          color: { field: 'when', type: 'nominal', sort: ['before', 'after'], title: null },
        },
      },
      { mark: { type: 'rule', strokeDash: [4, 4] }, encoding: { y: { datum: 2 } } },
    ],
  }).spec;
  return renderSvg(spec);
}

/** The "did it work?" section: the verdict, the held-out evidence beside the true figures, the re-scan. */
async function evidenceSection(report: DefenseReport): Promise<string> {
  const verdict = report.verdict ?? [];
  if (verdict.length === 0 && (report.evidence ?? null) === null && (report.verification ?? null) === null) return '';
  const cell = (value: number | null | undefined): string =>
    value === null || value === undefined || Number.isNaN(value) ? '–' : value.toFixed(1);
  const evidence = report.evidence ?? null;
  const reading = (r: HeldOutEvidence['before'] | undefined): Partial<TriggerReading> => r ?? {};
  const truth = report.attack !== null;
  const rows =
    evidence === null
      ? ''
      : `<table><tr><th></th><th>found trigger's success %</th><th>without the trigger %</th><th>held-out clean accuracy %</th>${truth ? '<th>true ASR %</th><th>BA %</th>' : ''}</tr>
${(['before', 'after'] as const)
  .map((when) => {
    const r = reading(evidence[when]);
    return `<tr><th>${when}</th><td>${cell(r.trigger_success)}</td><td>${cell(r.target_without_trigger)}</td><td>${cell(r.clean_accuracy)}</td>${truth ? `<td>${cell(report[when].asr)}</td><td>${cell(report[when].ba)}</td>` : ''}</tr>`;
  })
  .join('\n')}
</table>
<p class="muted">${evidence.images} clean images were held out from the defense (never scanned, inverted or trained on)${evidence.stamped_images === null ? '' : `; the found trigger stamped the ${evidence.stamped_images} of them not of class ${evidence.target}`}.${truth ? ' The true ASR and BA are measured on the test split with the attack, which the defense was never shown.' : ''}</p>`;
  const verification = report.verification ?? null;
  const chart =
    verification === null
      ? ''
      : `<h3>Detection scan before and after</h3>
${await verificationChart(verification)}
<p class="muted">Each class's ${verification.statistic} anomaly index (how far below the classes' median its inverted trigger's ${verification.statistic === 'size' ? 'size' : 'loss'} lies); above the dashed line (2) a class stands out.${verification.after === null ? ' The model was left unchanged, so it was not scanned again.' : ''} The scans took ${verification.seconds.toFixed(0)} s beyond the defense.</p>`;
  return `<h2>Did it work?</h2>
<ul class="verdict-lines">${verdict.map((line) => `<li>${escape(line)}</li>`).join('')}</ul>
${rows}
${chart}`;
}

/** A line on the clean-accuracy guard, if it was on. */
function guardLine(guard: DefenseReport['accuracy_guard'], refitAnyway: boolean): string {
  if (guard === undefined) return '';
  return `<p class="muted">Accuracy guard (${guard.tolerance} points): the clean images' accuracy was ${guard.before.toFixed(2)} % before and ${guard.after.toFixed(2)} % after purification; ${guard.refit_head ? 'so the head was re-fitted' : refitAnyway ? 'within the tolerance (the head was re-fitted anyway, as asked)' : 'it did nothing'}.</p>`;
}

export function escape(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

/** A line naming the settings that differ from the published configuration, if any. */
function changes(options: DefenseReport['changes_from_published']): string {
  const entries = Object.entries(options ?? {});
  if (entries.length === 0) return '<p class="muted">Purification: the published loss and schedule.</p>';
  const list = entries.map(([key, value]) => `<code>${escape(key)} = ${escape(String(value))}</code>`).join(', ');
  return `<p class="muted">Purification settings that differ from the published configuration: ${list}.</p>`;
}

/** BA and ASR (or the loss, without an attack) per epoch, as an SVG string. */
export async function epochChart(epochs: DefenseReport['epochs']): Promise<string> {
  const values = epochs.flatMap((e) => [
    ...(e.ba === null ? [] : [{ epoch: e.epoch + 1, metric: 'BA %', value: e.ba }]),
    ...(e.asr === null ? [] : [{ epoch: e.epoch + 1, metric: 'ASR %', value: e.asr }]),
  ]);
  const lossOnly = values.length === 0;
  const spec = compile({
    width: 520,
    height: 240,
    data: { values: lossOnly ? epochs.map((e) => ({ epoch: e.epoch + 1, metric: 'loss', value: e.loss })) : values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'epoch', type: 'quantitative', title: 'purification epoch' },
      y: {
        field: 'value',
        type: 'quantitative',
        title: lossOnly ? 'contrastive loss' : 'percent',
        ...(lossOnly ? {} : { scale: { domain: [0, 100] } }),
      },
      color: { field: 'metric', type: 'nominal', title: null },
    },
  }).spec;
  return renderSvg(spec);
}

/** A picture for the report, e.g. the inverted trigger. */
export interface ReportFigure {
  png: Buffer;
  caption: string;
}

const capitalized = (text: string): string => text.charAt(0).toUpperCase() + text.slice(1);

/** "inversion 36, purification 80, total 130" from the report's seconds. */
function secondsLine(seconds: Record<string, number>): string {
  return Object.entries(seconds)
    .filter(([, value]) => value >= 0.5)
    .map(([stage, value]) => `${escape(stage.replace(/_/g, ' '))} ${value.toFixed(0)}`)
    .join(', ');
}

export async function reportHtml(report: DefenseReport, figure: ReportFigure | null): Promise<string> {
  const cell = (value: number | null, digits = 2): string =>
    value === null || Number.isNaN(value) ? '–' : value.toFixed(digits);
  const rows = (['before', 'after'] as const)
    .map(
      (when) =>
        `<tr><th>${when}</th><td>${cell(report[when].ba)}</td><td>${cell(report[when].asr)}</td><td>${cell(report[when].ra)}</td><td>${cell(report[when].asr_no_trigger ?? null)}</td></tr>`,
    )
    .join('\n');
  const unchanged = report.changed === false;
  const refit = report.changes_from_published?.refit_head === true;
  const verdict = unchanged
    ? `<p class="verdict"><strong>${escape(capitalized(report.reason ?? 'the defense left the model unchanged'))}</strong>: the model was left as it was, so the "after" row repeats the "before" row.</p>`
    : '';
  const target =
    report.target === null
      ? 'No target class'
      : `Target class ${report.target}${report.detected_target === null ? ' (given)' : ` (detected: ${report.detected_target})`}`;
  const figureHtml =
    figure === null
      ? ''
      : `<h2>Inverted trigger</h2>
<img alt="inverted trigger" src="data:image/png;base64,${figure.png.toString('base64')}">
<p class="muted">${escape(figure.caption)}</p>`;
  const training =
    report.epochs.length === 0
      ? ''
      : `<h2>Training</h2>
${await epochChart(report.epochs)}
<p class="muted">BA and ASR per epoch on the monitor subset of the test split${refit || report.accuracy_guard?.refit_head === true ? '; the head was re-fit on the clean data after the last epoch, so the table\'s "after" row can differ from the last point' : ''}.</p>`;
  const mcldefLines =
    report.method === 'mcldef' && !unchanged
      ? `${changes(report.changes_from_published)}\n${guardLine(report.accuracy_guard, refit)}`
      : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mcldef report: ${escape(report.model ?? 'model')}</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 760px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; } th, td { border: 1px solid #ccc; padding: 4px 12px; text-align: right; }
img { image-rendering: pixelated; border: 1px solid #ccc; } .muted { color: #666; }
.verdict { padding: 8px 12px; background: #eef6ee; border: 1px solid #9c9; }
tr.flagged { background: #fdecea; }
</style></head><body>
<h1>Backdoor removal report (${report.method === 'mcldef' ? 'MCLDef' : escape(report.method)})</h1>
<p>Model <code>${escape(report.model ?? '–')}</code> on <code>${escape(report.data ?? '–')}</code>${report.attack === null ? '' : `, evaluated under <code>${escape(report.attack)}</code>`}.
${target}.</p>
${verdict}
${await evidenceSection(report)}
<h2>Before and after</h2>
<table><tr><th></th><th>BA %</th><th>ASR %</th><th>RA %</th><th title="the ASR images without the trigger that the model already sends to the target">target without trigger %</th></tr>
${rows}
</table>
<p>DER ${cell(report.der, 4)} · seconds: ${secondsLine(report.seconds)}</p>
${detectionTable(report.detection, report.detected_target)}
${figureHtml}
${training}
${mcldefLines}
</body></html>
`;
}
