// MCLDef: trigger inversion (invert, one method a file: pattern, mask, warp, signal; the
// triggers in trigger), backdoor detection (detect), model-contrastive purification (purify).
export * from './trigger.js';
export * from './invert.js';
export * from './pattern.js';
export * from './mask.js';
export * from './passes.js';
export * from './warp.js';
export * from './signal.js';
export * from './detect.js';
export * from './evidence.js';
export * from './purify.js';
