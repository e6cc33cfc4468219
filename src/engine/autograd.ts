// Grad mode scopes, gradients with respect to inputs, and global engine settings.
import { readFileSync } from 'node:fs';

import { native } from './native.js';
import { Tensor } from './tensor.js';
import { tidy } from './scope.js';

/** Runs `fn` with gradient recording off (like `torch.no_grad()`). */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs `fn` with gradient recording on, even inside `noGrad`. */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const previous = native.isGradEnabled();
  native.setGradEnabled(enabled);
  try {
    return fn();
  } finally {
    native.setGradEnabled(previous);
  }
}

/**
 * Runs `fn` under CPU autocast to bfloat16 (`torch.autocast('cpu')`): convolutions and
 * matrix products compute in bfloat16 — several times faster on CPUs with AMX or
 * AVX-512 BF16 — while parameters, gradients and reductions stay float32. Outputs of those
 * ops are bfloat16; cast them with `.float()` before losses that need the precision.
 */
export function autocast<T>(fn: () => T): T {
  const previous = native.enterAutocast();
  try {
    return fn();
  } finally {
    native.exitAutocast(previous);
  }
}

/** float32, or bfloat16 autocast over channels-last images (see `autocast`). */
export type Precision = 'float32' | 'bfloat16';

/** A precision, or 'auto': bfloat16 where the CPU computes it natively, float32 elsewhere. */
export type PrecisionChoice = Precision | 'auto';

/**
 * Whether a Linux /proc/cpuinfo text lists native bfloat16 arithmetic (AVX-512 BF16 or AMX).
 * Without it oneDNN emulates bfloat16 with float32 instructions, which is no faster than
 * float32, so 'auto' must not pick it there.
 */
export function cpuinfoHasBfloat16(cpuinfo: string): boolean {
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  return flags.includes('avx512_bf16') || flags.includes('amx_bf16');
}

let nativeBfloat16: boolean | undefined;

/** Whether this machine's CPU has native bfloat16 (read once from /proc/cpuinfo; false where absent). */
export function hasNativeBfloat16(): boolean {
  if (nativeBfloat16 === undefined) {
    try {
      nativeBfloat16 = cpuinfoHasBfloat16(readFileSync('/proc/cpuinfo', 'utf8'));
    } catch {
      nativeBfloat16 = false;
    }
  }
  return nativeBfloat16;
}

/** The precision to run at: 'auto' becomes bfloat16 on CPUs with native bfloat16, else float32. */
export function resolvePrecision(choice: PrecisionChoice): Precision {
  if (choice !== 'auto') return choice;
  return hasNativeBfloat16() ? 'bfloat16' : 'float32';
}

/**
 * `fn(input)` at `precision`, returned as float32. For 'bfloat16' the (N×C×H×W) input is
 * made channels-last, the layout in which oneDNN's bfloat16 convolutions are fastest.
 */
export function atPrecision(precision: Precision, input: Tensor, fn: (input: Tensor) => Tensor): Tensor {
  if (precision === 'float32') return fn(input);
  return tidy(() => autocast(() => fn(input.contiguous('channels_last'))).float());
}

export function isAutocastEnabled(): boolean {
  return native.isAutocastEnabled();
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/**
 * Gradients of `outputs` with respect to `inputs`, returned rather than accumulated
 * into `.grad` (like `torch.autograd.grad`). An input that does not affect the outputs
 * gives null when `allowUnused`, an error otherwise.
 */
export function grad(
  outputs: Tensor | readonly Tensor[],
  inputs: readonly Tensor[],
  options: {
    gradOutputs?: readonly (Tensor | null)[];
    retainGraph?: boolean;
    createGraph?: boolean;
    allowUnused?: boolean;
  } = {},
): (Tensor | null)[] {
  const outputList = outputs instanceof Tensor ? [outputs] : outputs;
  const results = native.grad(
    outputList.map((output) => output.handle),
    inputs.map((input) => input.handle),
    options.gradOutputs === undefined ? null : options.gradOutputs.map((g) => (g === null ? null : g.handle)),
    options.retainGraph,
    options.createGraph ?? false,
    options.allowUnused ?? false,
  );
  return results.map((handle) => (handle === null ? null : new Tensor(handle)));
}

/** Seeds libtorch's default generators; with one thread, runs then repeat exactly. */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

/** Intra-op threads used by libtorch's CPU kernels. */
export function setNumThreads(threads: number): void {
  native.setNumThreads(threads);
}

export function getNumThreads(): number {
  return native.getNumThreads();
}

/** Tensor handles created and not yet freed (for leak tests). */
export function liveTensorCount(): number {
  return native.liveCount();
}

export function cudaAvailable(): boolean {
  return native.cudaAvailable();
}

/** The libtorch version the addon was built against. */
export function libtorchVersion(): string {
  return native.version();
}
