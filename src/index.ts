// mcldef: backdoor detection and removal for image classifiers, on libtorch.
export * from './engine/index.js';
export * as nn from './nn/index.js';
export * as data from './data/index.js';
export * as attacks from './attacks/index.js';
export * as io from './io/index.js';
export * as models from './nn/models/index.js';
export { evaluate, defenseEffectivenessRating, type Metrics, type TestTimeTrigger } from './eval/metrics.js';
export { trainModel, type TrainConfig, type TrainRun, type TrainResult } from './train/trainer.js';
export {
  invertTrigger,
  detectBackdoor,
  purify,
  type InvertedTrigger,
  type InversionOptions,
  type DetectionResult,
  type PurifyOptions,
} from './defenses/mcldef/index.js';
