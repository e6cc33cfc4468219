// Stage 1 of MCLDef: trigger inversion towards a target class (SPEC §2), one method a file.
// 'pattern' (pattern.ts): the published code's additive pattern, P+ − P-, size-regularized.
// 'mask' (mask.ts): the older code, Neural Cleanse's mask and pattern.
// 'warp' (warp.ts; not in the published code, for warping backdoors such as WaNet): a
// universal smooth warp of under a pixel, fitted towards the target.
// 'signal' (signal.ts; not in the published code, for full-image periodic triggers such as
// SIG): the sinusoidal stripes of a fixed family that reach the target most easily.
// The triggers they return are in trigger.ts.
import type { ImageSplit } from '../../data/dataset.js';
import type { Module } from '../../nn/module.js';
import { type MaskInversionOptions, invertMask } from './mask.js';
import { type PatternInversionOptions, invertPattern } from './pattern.js';
import { type SignalInversionOptions, invertSignal } from './signal.js';
import type { InversionMethod, InvertedTrigger } from './trigger.js';
import { type WarpInversionOptions, invertWarp } from './warp.js';

/**
 * Every method's settings; each method reads its own (see PatternInversionOptions,
 * MaskInversionOptions, WarpInversionOptions, SignalInversionOptions for the defaults, which
 * differ: passes 100 for pattern and mask, 10 for warp; lr 0.1 for pattern, 0.005 for mask).
 */
export interface InversionOptions
  extends PatternInversionOptions, MaskInversionOptions, WarpInversionOptions, SignalInversionOptions {
  /** 'pattern' (default), 'mask', 'warp' or 'signal'. */
  method?: InversionMethod;
}

/** Inverts a trigger that sends the clean images to `target`. */
export function invertTrigger(
  model: Module,
  clean: ImageSplit,
  target: number,
  options: InversionOptions = {},
): InvertedTrigger {
  const method = options.method ?? 'pattern';
  switch (method) {
    case 'pattern':
      return invertPattern(model, clean, target, options);
    case 'mask':
      return invertMask(model, clean, target, options);
    case 'warp':
      return invertWarp(model, clean, target, options);
    case 'signal':
      return invertSignal(model, clean, target, options);
    default:
      // JavaScript callers: an unknown method used to run the mask inversion silently.
      throw new TypeError(
        `invertTrigger: unknown method '${String(method satisfies never)}' (pattern, mask, warp or signal)`,
      );
  }
}
