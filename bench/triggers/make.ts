// `node --import tsx bench/triggers/make.ts`: writes the seeded trigger and mask images of the
// detection benchmark's extra attacks (bench/grids/cifar10.yaml) next to this file. Each is a
// 32×32 RGBA PNG; a mask is white where the trigger replaces the image.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';

import { seededRandom } from '../../src/data/rng.js';

const SIZE = 32;
const here = fileURLToPath(new URL('.', import.meta.url));

function write(name: string, pixel: (x: number, y: number) => [number, number, number]): void {
  const png = new PNG({ width: SIZE, height: SIZE });
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const offset = (y * SIZE + x) * 4;
      const [r, g, b] = pixel(x, y);
      png.data[offset] = r;
      png.data[offset + 1] = g;
      png.data[offset + 2] = b;
      png.data[offset + 3] = 255;
    }
  }
  writeFileSync(join(here, `${name}.png`), PNG.sync.write(png));
}

/** A mask image from a predicate, and a trigger of random saturated colours (seeded). */
function trigger(name: string, inside: (x: number, y: number) => boolean, seed: number): number {
  const random = seededRandom(seed);
  const colours = Array.from(
    { length: SIZE * SIZE },
    () => [0, 0, 0].map(() => (random() < 0.5 ? 0 : 255)) as [number, number, number],
  );
  let count = 0;
  write(`${name}-mask`, (x, y) => {
    const on = inside(x, y);
    if (on) count++;
    return on ? [255, 255, 255] : [0, 0, 0];
  });
  write(`${name}-trigger`, (x, y) => colours[y * SIZE + x]!);
  return count;
}

// An 11×11 patch (121 pixels, 11.8 % of the image) away from the corners.
const large = trigger('large', (x, y) => x >= 17 && x < 28 && y >= 5 && y < 16, 11);
// A one-pixel frame along the border (124 pixels).
const border = trigger('border', (x, y) => x === 0 || y === 0 || x === SIZE - 1 || y === SIZE - 1, 12);
// 25 pixels scattered over the whole image.
const scatterRandom = seededRandom(13);
const scattered = new Set<number>();
while (scattered.size < 25) scattered.add(Math.floor(scatterRandom() * SIZE * SIZE));
const scatter = trigger('scattered', (x, y) => scattered.has(y * SIZE + x), 14);
console.log(`large: ${large} pixels, border: ${border}, scattered: ${scatter}`);
