// Detection scans made of given sizes, for tests of what reads them (the decision, the verdict).
import type { ClassScan } from '../../src/defenses/mcldef/detect.js';

/**
 * Scans with the given sizes and agreements (null: not restarted), no warp or signal scan;
 * feature separations where given.
 */
export function scans(sizes: number[], stability: Record<number, number> = {}, separations?: number[]): ClassScan[] {
  return sizes.map((size, label) => ({
    label,
    size,
    l1: size,
    attackAccuracy: 1,
    found: true,
    warp: null,
    signal: null,
    features:
      separations === undefined
        ? null
        : {
            reach: 1,
            stampedTightness: 0.9,
            cleanTightness: 0.9,
            spreadRatio: 1,
            separation: separations[label]!,
            nearestSeparation: separations[label]!,
            nearestClass: label,
          },
    stability: stability[label] ?? null,
    restartSizes: stability[label] === undefined ? [] : [size, size],
    seconds: 1,
  }));
}
