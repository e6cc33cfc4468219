// Charts for the reports: Vega specs rendered to inline SVG, so a page needs no network and
// no script.
import * as vega from 'vega';
import { type TopLevelSpec, compile } from 'vega-lite';

/** A compiled Vega spec as an SVG string. */
export async function renderSvg(spec: vega.Spec): Promise<string> {
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** A Vega-Lite spec as an SVG string. */
export function renderVegaLite(spec: TopLevelSpec): Promise<string> {
  return renderSvg(compile(spec).spec);
}
