// The report files of a defense run: report.json, report.html and the method's figure
// (trigger.png for MCLDef), each written to a temporary name and renamed.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import type { DefendResult } from '../defenses/pipeline.js';
import { writeFileAtomic } from '../io/checkpoint.js';
import { reportHtml } from './html.js';

/** Writes the report files into `folder` (made if missing); returns the HTML report's path. */
export async function writeReportFiles(
  folder: string,
  result: Pick<DefendResult, 'report' | 'figure'>,
): Promise<string> {
  mkdirSync(folder, { recursive: true });
  const { report, figure } = result;
  if (figure !== undefined) writeFileAtomic(join(folder, figure.name), [figure.png]);
  writeFileAtomic(join(folder, 'report.json'), [Buffer.from(JSON.stringify(report, null, 2) + '\n')]);
  const html = join(folder, 'report.html');
  writeFileAtomic(html, [Buffer.from(await reportHtml(report, figure ?? null))]);
  return html;
}
