// mcldef: backdoor detection and removal for image classifiers, on libtorch.
export * from './engine/index.js';
export * as nn from './nn/index.js';
export * as data from './data/index.js';
export * as attacks from './attacks/index.js';
export * as io from './io/index.js';
export * as models from './nn/models/index.js';
export { evaluate, defenseEffectivenessRating, type Metrics, type TestTimeTrigger } from './eval/metrics.js';
export { trainModel, type TrainConfig, type TrainRun, type TrainResult } from './train/trainer.js';
export * as defenses from './defenses/index.js';
export {
  defend,
  registerDefense,
  defenseEntries,
  type Defense,
  type DefenseContext,
  type DefenseEntry,
  type DefenseOutcome,
  type DefendReport,
  type DefendResult,
  type OptionSpecs,
} from './defenses/index.js';
export { defendCheckpoint, type DefendCheckpointOptions } from './pipeline/defend-checkpoint.js';
export { buildAttack, buildModel, loadSplit, type AttackSpec } from './pipeline/setup.js';
export { writeReportFiles } from './report/files.js';
export type { Trigger } from './attacks/trigger.js';
export {
  invertTrigger,
  detectBackdoor,
  decideTarget,
  type ClassScan,
  purify,
  withPatterns,
  type InvertedTrigger,
  type InversionOptions,
  type DetectionResult,
  type Decision,
  type PurifyOptions,
} from './defenses/mcldef/index.js';
