// A tiny image-folder dataset (3 classes of 8×8 PPM images, 40 per class and split) for
// end-to-end runs of the command line and the library in seconds.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { temporaryFolder } from './tmp.js';

/**
 * Classes of noisy flat images, one grey level each (default 3 classes: 60, 120, 190), `count`
 * images per class and split (40); `seed` starts the noise generator (7).
 */
export function tinyImageFolder(options: { levels?: readonly number[]; count?: number; seed?: number } = {}): string {
  const root = temporaryFolder('mcldef-tiny-');
  const levels = options.levels ?? [60, 120, 190];
  let state = options.seed ?? 7;
  const noise = (): number => ((state = (state * 1103515245 + 12345) % 2 ** 31) % 40) - 20;
  for (const split of ['train', 'test']) {
    for (const [index, level] of levels.entries()) {
      const label = String.fromCharCode(97 + index);
      mkdirSync(join(root, split, label), { recursive: true });
      for (let i = 0; i < (options.count ?? 40); i++) {
        const body = Buffer.alloc(8 * 8 * 3, 0).map(() => level + noise());
        writeFileSync(join(root, split, label, `${i}.ppm`), Buffer.concat([Buffer.from('P6 8 8 255\n'), body]));
      }
    }
  }
  return root;
}
