// A generic image-folder tree: root/<class>/<image> (JPEG, PNG, PPM), classes sorted by name.
import type { ImageSplitInit } from '../dataset.js';
import { NO_NORMALIZATION } from '../normalization.js';
import type { Split } from './cifar.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { decodeImageFiles, listClassFolders } from './files.js';

/** root/train and root/test when both exist, else root itself for either split. */
export function imageFolderRoot(root: string, split: Split): string {
  const splitFolder = join(root, split);
  return existsSync(splitFolder) ? splitFolder : root;
}

export function readImageFolder(
  root: string,
  split: Split,
  options: { channels?: 1 | 3; size?: readonly [number, number] } = {},
): ImageSplitInit {
  const folder = imageFolderRoot(root, split);
  const channels = options.channels ?? 3;
  const { classNames, files, labels } = listClassFolders(folder);
  const { pixels, height, width } = decodeImageFiles(files, {
    channels,
    ...(options.size ? { resize: options.size } : {}),
  });
  const normalization =
    channels === 3 ? NO_NORMALIZATION : { mean: [NO_NORMALIZATION.mean[0]!], std: [NO_NORMALIZATION.std[0]!] };
  return { pixels, labels, channels, height, width, classNames, normalization, source: `imagefolder:${folder}` };
}
