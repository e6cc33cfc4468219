// Grad mode scopes, gradients with respect to inputs, and global engine settings.
import { native } from './native.js';
import { Tensor } from './tensor.js';

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
