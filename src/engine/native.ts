// Loads the libtorch addon built by `npm ci` (build/Release/mcldef_native.node) and
// types its functions. Only the engine talks to this module.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A libtorch tensor's slot id in the addon's handle table, owned by one Tensor. */
export type NativeHandle = number & { readonly __nativeTensor: unique symbol };

/** What `call` accepts for one schema argument. */
export type NativeArg =
  | NativeHandle
  | number
  | boolean
  | string
  | null
  | undefined
  | readonly number[]
  | readonly boolean[]
  | readonly (NativeHandle | null)[];

export type NativeResult = NativeHandle | NativeHandle[] | number | boolean | undefined | NativeResult[];

export interface NativeBinding {
  release(handle: NativeHandle): void;
  liveCount(): number;
  isLive(handle: NativeHandle): boolean;
  fromBuffer(
    data: ArrayBufferView | ArrayBuffer,
    shape: readonly number[],
    dtype: number,
    device: string,
  ): NativeHandle;
  toBuffer(handle: NativeHandle): ArrayBuffer;
  shape(handle: NativeHandle): number[];
  dtype(handle: NativeHandle): number;
  device(handle: NativeHandle): string;
  item(handle: NativeHandle): number | boolean;
  sameStorage(a: NativeHandle, b: NativeHandle): boolean;
  lookup(name: string, overload: string): number;
  schemaOf(op: number): string;
  call(op: number, ...args: NativeArg[]): NativeResult;
  backward(
    outputs: NativeHandle[],
    gradOutputs: (NativeHandle | null)[] | null,
    retainGraph: boolean | undefined,
    createGraph: boolean,
  ): void;
  grad(
    outputs: NativeHandle[],
    inputs: NativeHandle[],
    gradOutputs: (NativeHandle | null)[] | null,
    retainGraph: boolean | undefined,
    createGraph: boolean,
    allowUnused: boolean,
  ): (NativeHandle | null)[];
  gradOf(handle: NativeHandle): NativeHandle | null;
  setGrad(handle: NativeHandle, grad: NativeHandle | null): void;
  requiresGrad(handle: NativeHandle): boolean;
  setRequiresGrad(handle: NativeHandle, value: boolean): void;
  isLeaf(handle: NativeHandle): boolean;
  gradFnName(handle: NativeHandle): string | null;
  isGradEnabled(): boolean;
  setGradEnabled(enabled: boolean): void;
  isAutocastEnabled(): boolean;
  /** Turns bfloat16 CPU autocast on; returns whether it was on. Pair with exitAutocast. */
  enterAutocast(): boolean;
  exitAutocast(previous: boolean): void;
  manualSeed(seed: number): void;
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  cudaAvailable(): boolean;
  cudaDeviceCount(): number;
  version(): string;
  /** Installs the caching CPU allocator (first call) and turns its cache on or off. */
  configureHostAllocator(caching: boolean, maxCachedBytes: number): void;
  /** Frees every cached host block; the bytes freed. */
  releaseHostMemory(): number;
  hostMemoryStats(): { installed: boolean; cachedBytes: number; cachedBlocks: number; hits: number; misses: number };
  /** Decodes JPEG files on `threads` threads: all pixels (H×W×C each) and [h, w] per image. */
  decodeJpegFiles(paths: readonly string[], channels: 1 | 3, threads: number): { pixels: Buffer; sizes: Int32Array };
  decodeJpeg(bytes: Uint8Array, channels: 1 | 3): { pixels: Buffer; height: number; width: number };
}

function packageRoot(): string {
  let folder = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(folder, 'package.json'))) {
    const parent = dirname(folder);
    if (parent === folder)
      throw new Error('mcldef: cannot find the package root above ' + fileURLToPath(import.meta.url));
    folder = parent;
  }
  return folder;
}

function load(): NativeBinding {
  const root = packageRoot();
  const path = join(root, 'build/Release/mcldef_native.node');
  if (!existsSync(path)) {
    throw new Error(
      `mcldef: the native addon is not built (${path} is missing). ` +
        'Install libtorch (sudo apt-get install libtorch-dev) and run `npm ci` or `npm run build:native`.',
    );
  }
  return createRequire(import.meta.url)(path) as NativeBinding;
}

export const native: NativeBinding = load();

const opIndex = new Map<string, number>();

/** Index of an ATen operator, "name" or "name.overload" (looked up once, then cached). */
export function op(qualified: string): number {
  let index = opIndex.get(qualified);
  if (index === undefined) {
    const dot = qualified.indexOf('.');
    const name = dot < 0 ? qualified : qualified.slice(0, dot);
    const overload = dot < 0 ? '' : qualified.slice(dot + 1);
    index = native.lookup('aten::' + name, overload);
    opIndex.set(qualified, index);
  }
  return index;
}
