// A tiny image-folder dataset (3 classes of 8×8 PPM images, 40 per class and split) for
// end-to-end runs of the command line and the library in seconds.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { temporaryFolder } from './tmp.js';

export function tinyImageFolder(): string {
  const root = temporaryFolder('mcldef-defend-');
  let state = 7;
  const noise = (): number => ((state = (state * 1103515245 + 12345) % 2 ** 31) % 40) - 20;
  for (const split of ['train', 'test']) {
    for (const [label, level] of [
      ['a', 60],
      ['b', 120],
      ['c', 190],
    ] as const) {
      mkdirSync(join(root, split, label), { recursive: true });
      for (let i = 0; i < 40; i++) {
        const body = Buffer.alloc(8 * 8 * 3, 0).map(() => level + noise());
        writeFileSync(join(root, split, label, `${i}.ppm`), Buffer.concat([Buffer.from('P6 8 8 255\n'), body]));
      }
    }
  }
  return root;
}
