// MCLDef: trigger inversion (invert), backdoor detection (detect), model-contrastive purification (purify).
export * from './invert.js';
export * from './passes.js';
export * from './warp.js';
export * from './signal.js';
export * from './detect.js';
export * from './purify.js';
