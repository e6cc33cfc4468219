// Listing and decoding image files: JPEG through libjpeg-turbo (native, threaded),
// PNG through pngjs, PPM (GTSRB) parsed here; resizing with libtorch.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { extname, join } from 'node:path';

import { PNG } from 'pngjs';

import { tensor } from '../../engine/creation.js';
import * as F from '../../engine/functional.js';
import { native } from '../../engine/native.js';
import { tidy } from '../../engine/scope.js';

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.ppm']);

export class DataError extends Error {
  override name = 'DataError';
}

export function requireDirectory(path: string, what: string): void {
  if (!existsSync(path)) throw new DataError(`${what} not found: ${path}`);
  if (!statSync(path).isDirectory()) throw new DataError(`${what} is not a folder: ${path}`);
}

/** Class folders (sorted by name, as torchvision's ImageFolder does) and their image files (sorted). */
export function listClassFolders(root: string): { classNames: string[]; files: string[]; labels: Int32Array } {
  requireDirectory(root, 'image folder');
  const classNames = readdirSync(root, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  if (classNames.length === 0) throw new DataError(`${root} has no class folders (expected ${root}/<class>/<image>)`);
  const files: string[] = [];
  const labels: number[] = [];
  classNames.forEach((name, label) => {
    const folder = join(root, name);
    for (const file of readdirSync(folder).sort()) {
      if (IMAGE_EXTENSIONS.has(extname(file).toLowerCase())) {
        files.push(join(folder, file));
        labels.push(label);
      }
    }
  });
  if (files.length === 0) throw new DataError(`${root} has class folders but no .jpg/.png/.ppm images`);
  return { classNames, files, labels: Int32Array.from(labels) };
}

/** One decoded image, H×W×C (interleaved) as on disk. */
interface Decoded {
  pixels: Uint8Array;
  height: number;
  width: number;
}

function decodePng(path: string, channels: 1 | 3): Decoded {
  const png = PNG.sync.read(readFileSync(path));
  const pixels = new Uint8Array(png.width * png.height * channels);
  for (let i = 0, j = 0; i < png.data.length; i += 4, j += channels) {
    if (channels === 3) {
      pixels[j] = png.data[i]!;
      pixels[j + 1] = png.data[i + 1]!;
      pixels[j + 2] = png.data[i + 2]!;
    } else {
      // ITU-R 601-2 luma, as PIL's convert('L').
      pixels[j] = Math.round((png.data[i]! * 299 + png.data[i + 1]! * 587 + png.data[i + 2]! * 114) / 1000);
    }
  }
  return { pixels, height: png.height, width: png.width };
}

/** Binary PPM (P6) or PGM (P5), maxval ≤ 255. */
export function decodePnm(bytes: Uint8Array, path: string, channels: 1 | 3): Decoded {
  const header: string[] = [];
  let offset = 0;
  while (header.length < 4 && offset < bytes.length) {
    while (offset < bytes.length && /\s/.test(String.fromCharCode(bytes[offset]!))) offset++;
    if (bytes[offset] === 0x23) {
      while (offset < bytes.length && bytes[offset] !== 0x0a) offset++;
      continue;
    }
    let token = '';
    while (offset < bytes.length && !/\s/.test(String.fromCharCode(bytes[offset]!)))
      token += String.fromCharCode(bytes[offset++]!);
    header.push(token);
  }
  offset++;
  const [magic, w, h, max] = header;
  const width = Number(w);
  const height = Number(h);
  if ((magic !== 'P6' && magic !== 'P5') || !(width > 0 && height > 0) || Number(max) > 255) {
    throw new DataError(`${path}: not a binary 8-bit PPM/PGM file`);
  }
  const sourceChannels = magic === 'P6' ? 3 : 1;
  const raw = bytes.subarray(offset, offset + width * height * sourceChannels);
  if (raw.length !== width * height * sourceChannels) throw new DataError(`${path}: truncated PPM data`);
  if (sourceChannels === channels) return { pixels: Uint8Array.from(raw), height, width };
  const pixels = new Uint8Array(width * height * channels);
  for (let p = 0; p < width * height; p++) {
    if (channels === 3) pixels.fill(raw[p]!, p * 3, p * 3 + 3);
    else pixels[p] = Math.round((raw[p * 3]! * 299 + raw[p * 3 + 1]! * 587 + raw[p * 3 + 2]! * 114) / 1000);
  }
  return { pixels, height, width };
}

/**
 * Decodes image files into one N×C×H×W uint8 buffer. Every image must be H×W unless
 * `resize` is given, in which case images of another size are resized (bilinear,
 * antialiased like PIL's resize).
 */
export function decodeImageFiles(
  files: readonly string[],
  options: { channels: 1 | 3; resize?: readonly [number, number] },
): { pixels: Uint8Array; height: number; width: number } {
  const { channels } = options;
  const jpegIndex: number[] = [];
  files.forEach((file, i) => {
    const extension = extname(file).toLowerCase();
    if (extension === '.jpg' || extension === '.jpeg') jpegIndex.push(i);
  });
  const decoded = new Array<Decoded>(files.length);
  if (jpegIndex.length > 0) {
    const batch = native.decodeJpegFiles(
      jpegIndex.map((i) => files[i]!),
      channels,
      availableParallelism(),
    );
    let offset = 0;
    jpegIndex.forEach((fileIndex, k) => {
      const height = batch.sizes[2 * k]!;
      const width = batch.sizes[2 * k + 1]!;
      const length = height * width * channels;
      decoded[fileIndex] = { pixels: batch.pixels.subarray(offset, offset + length), height, width };
      offset += length;
    });
  }
  files.forEach((file, i) => {
    if (decoded[i] !== undefined) return;
    const extension = extname(file).toLowerCase();
    decoded[i] = extension === '.png' ? decodePng(file, channels) : decodePnm(readFileSync(file), file, channels);
  });
  const first = decoded[0];
  if (first === undefined) throw new DataError('no images to decode');
  const [height, width] = options.resize ?? [first.height, first.width];
  const imageBytes = height * width * channels;
  const interleaved = new Uint8Array(files.length * imageBytes);
  decoded.forEach((image, i) => {
    let source = image.pixels;
    if (image.height !== height || image.width !== width) {
      if (options.resize === undefined) {
        throw new DataError(
          `${files[i]} is ${image.height}×${image.width} but ${files[0]} is ${height}×${width}; give a size to resize to`,
        );
      }
      source = resizeInterleaved(image, channels, height, width);
    }
    interleaved.set(source, i * imageBytes);
  });
  // N×H×W×C interleaved → N×C×H×W planes, as one tensor op.
  const pixels = tidy(
    () =>
      tensor(interleaved, { shape: [files.length, height, width, channels] })
        .permute([0, 3, 1, 2])
        .contiguous()
        .toTypedArray() as Uint8Array,
  );
  return { pixels, height, width };
}

function resizeInterleaved(image: Decoded, channels: number, height: number, width: number): Uint8Array {
  return tidy(() => {
    const input = tensor(image.pixels, { shape: [1, image.height, image.width, channels] })
      .permute([0, 3, 1, 2])
      .to('float32');
    const resized = F.interpolate(input, { size: [height, width], mode: 'bilinear', antialias: true });
    return resized.round().clamp(0, 255).to('uint8').permute([0, 2, 3, 1]).contiguous().toTypedArray() as Uint8Array;
  });
}
