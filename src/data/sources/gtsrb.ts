// GTSRB: training images in class folders (Final_Training/Images/00000/*.ppm), test images
// with labels in a CSV (GT-final_test.csv: Filename;...;ClassId), resized to 32×32.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { ImageSplitInit } from '../dataset.js';
import { GTSRB_NORMALIZATION } from '../normalization.js';
import type { Split } from './cifar.js';
import { DataError, decodeImageFiles, listClassFolders, requireDirectory } from './files.js';

const SIZE: [number, number] = [32, 32];

function firstExisting(candidates: string[], what: string): string {
  const found = candidates.find((candidate) => existsSync(candidate));
  if (found === undefined) throw new DataError(`GTSRB ${what} not found; looked for ${candidates.join(', ')}`);
  return found;
}

/** The files whose change invalidates the cache. */
export function gtsrbFiles(root: string, split: Split): string[] {
  return split === 'train' ? listClassFolders(trainFolder(root)).files : [testCsv(root), ...testImages(root).files];
}

function trainFolder(root: string): string {
  return firstExisting(
    [join(root, 'Final_Training/Images'), join(root, 'GTSRB/Final_Training/Images'), join(root, 'train')],
    'training folder',
  );
}

function testCsv(root: string): string {
  return firstExisting(
    [
      join(root, 'GT-final_test.csv'),
      join(root, 'Final_Test/GT-final_test.csv'),
      join(root, 'GTSRB/GT-final_test.csv'),
      join(root, 'Final_Test/Images/GT-final_test.csv'),
    ],
    'test label CSV (GT-final_test.csv)',
  );
}

function testImages(root: string): { files: string[]; labels: Int32Array } {
  const csv = testCsv(root);
  const folder = firstExisting(
    [join(root, 'Final_Test/Images'), join(root, 'GTSRB/Final_Test/Images'), join(root, 'test')],
    'test image folder',
  );
  const lines = readFileSync(csv, 'utf8')
    .split(/\r?\n/)
    .filter((line) => line.trim().length > 0);
  const header = (lines.shift() ?? '').split(';');
  const fileColumn = header.indexOf('Filename');
  const classColumn = header.indexOf('ClassId');
  if (fileColumn < 0 || classColumn < 0) throw new DataError(`${csv}: expected the columns Filename and ClassId`);
  const files: string[] = [];
  const labels: number[] = [];
  for (const line of lines) {
    const cells = line.split(';');
    files.push(join(folder, cells[fileColumn] ?? ''));
    labels.push(Number(cells[classColumn]));
  }
  return { files, labels: Int32Array.from(labels) };
}

export function readGtsrb(root: string, split: Split): ImageSplitInit {
  requireDirectory(root, 'GTSRB folder');
  const source = `gtsrb:${root} (${split})`;
  const classNames = Array.from({ length: 43 }, (_, i) => String(i).padStart(5, '0'));
  let files: string[];
  let labels: Int32Array;
  if (split === 'train') {
    const listed = listClassFolders(trainFolder(root));
    if (listed.classNames.length !== 43)
      throw new DataError(`${trainFolder(root)} has ${listed.classNames.length} class folders; GTSRB has 43`);
    ({ files, labels } = listed);
  } else {
    ({ files, labels } = testImages(root));
  }
  const { pixels } = decodeImageFiles(files, { channels: 3, resize: SIZE });
  return {
    pixels,
    labels,
    channels: 3,
    height: SIZE[0],
    width: SIZE[1],
    classNames,
    normalization: GTSRB_NORMALIZATION,
    source,
  };
}
