// Image decoding: JPEG pixels identical to libjpeg-turbo's defaults (PIL), PNG, PPM, resizing.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { PNG } from 'pngjs';

import { decodeImageFiles, decodePnm, listClassFolders } from '../../src/data/sources/files.js';
import { sharedPath } from '../helpers/shared.js';
import { temporaryFolder } from '../helpers/tmp.js';

const jpegFixtures = sharedPath('fixtures/jpeg');

test('JPEG decoding matches libjpeg-turbo (PIL) byte for byte on the 20 fixtures', { skip: jpegFixtures.skip }, () => {
  const manifest = JSON.parse(readFileSync(join(jpegFixtures.path, 'manifest.json'), 'utf8')) as {
    images: { jpeg: string; rgb: string; shape: [number, number, number] }[];
  };
  assert.equal(manifest.images.length, 20);
  const { pixels, height, width } = decodeImageFiles(
    manifest.images.map((image) => join(jpegFixtures.path, image.jpeg)),
    { channels: 3 },
  );
  assert.deepEqual([height, width], [32, 32]);
  let differing = 0;
  manifest.images.forEach((image, n) => {
    const expected = readFileSync(join(jpegFixtures.path, image.rgb)); // H×W×3 interleaved
    for (let p = 0; p < 32 * 32; p++) {
      for (let c = 0; c < 3; c++) {
        if (pixels[n * 3072 + c * 1024 + p] !== expected[p * 3 + c]) differing++;
      }
    }
  });
  assert.equal(differing, 0, `${differing} of ${20 * 3072} bytes differ`);
});

test('a corrupt JPEG names the file and the problem', () => {
  const folder = temporaryFolder('mcldef-jpeg-');
  const path = join(folder, 'broken.jpg');
  writeFileSync(path, Buffer.from('not a jpeg at all'));
  assert.throws(() => decodeImageFiles([path], { channels: 3 }), /broken\.jpg: not a valid JPEG: Not a JPEG file/);
  assert.throws(
    () => decodeImageFiles([join(folder, 'missing.jpg')], { channels: 3 }),
    /missing\.jpg: cannot open file/,
  );
});

test('PNG and PPM decode to C×H×W planes; mixed sizes need a resize size', () => {
  const folder = temporaryFolder('mcldef-img-');
  mkdirSync(join(folder, 'a'));
  mkdirSync(join(folder, 'b'));
  const png = new PNG({ width: 2, height: 1 });
  png.data.set([10, 20, 30, 255, 40, 50, 60, 255]);
  writeFileSync(join(folder, 'a', 'x.png'), PNG.sync.write(png));
  writeFileSync(
    join(folder, 'b', 'y.ppm'),
    Buffer.concat([Buffer.from('P6\n# comment\n2 1\n255\n'), Buffer.from([1, 2, 3, 4, 5, 6])]),
  );
  const { classNames, files, labels } = listClassFolders(folder);
  assert.deepEqual(classNames, ['a', 'b']);
  assert.deepEqual([...labels], [0, 1]);
  const { pixels } = decodeImageFiles(files, { channels: 3 });
  assert.deepEqual([...pixels], [10, 40, 20, 50, 30, 60, 1, 4, 2, 5, 3, 6]);
  assert.deepEqual([...decodePnm(Buffer.from('P5 2 1 255\n\x07\x08', 'latin1'), 'g.pgm', 1).pixels], [7, 8]);
  writeFileSync(join(folder, 'b', 'z.ppm'), Buffer.concat([Buffer.from('P6 4 2 255\n'), Buffer.alloc(24, 100)]));
  const all = listClassFolders(folder).files;
  assert.throws(() => decodeImageFiles(all, { channels: 3 }), /is 2×4 but .* is 1×2; give a size to resize to/);
  const resized = decodeImageFiles(all, { channels: 3, resize: [2, 2] });
  assert.equal(resized.pixels.length, 3 * 3 * 4);
  assert.deepEqual([...resized.pixels.subarray(24)], new Array(12).fill(100), 'a uniform image stays uniform');
  assert.throws(() => decodePnm(Buffer.from('P3 1 1 255\n1 2 3'), 'ascii.ppm', 3), /not a binary 8-bit PPM/);
});
