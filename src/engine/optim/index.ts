// Optimizers, learning-rate schedules and gradient clipping.
export { Optimizer, type ParamGroup, type ParamGroupSpec } from './optimizer.js';
export { SGD, type SGDOptions } from './sgd.js';
export { Adam, AdamW, type AdamOptions } from './adam.js';
export * from './lr-scheduler.js';
export { clipGradNorm_, clipGradValue_ } from './clip.js';
