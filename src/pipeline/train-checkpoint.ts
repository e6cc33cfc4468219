// A whole training run from files, as `mcldef train` does it: seed, load the data, build the
// model and the attack poisoned into it, train (resuming from a checkpoint), save the weights,
// evaluate BA and ASR on the test split. The CLI and the benchmark grid both call this.
import { availableParallelism } from 'node:os';

import { manualSeed, setNumThreads } from '../engine/autograd.js';
import { useDevice } from '../engine/device.js';
import { evaluate } from '../eval/metrics.js';
import { safetensorsStore, saveWeights } from '../io/index.js';
import { type EpochRecord, type ScheduleName, type TrainRun, trainModel } from '../train/trainer.js';
import { type AttackSettings, buildAttack, buildModel, loadSplit } from './setup.js';

export interface TrainCheckpointOptions extends AttackSettings {
  /** KIND:PATH, e.g. cifar10:./data. */
  data: string;
  /** A zoo architecture (default wrn-16-1). */
  arch?: string;
  /** Weights to start from instead of a fresh initialization. */
  weights?: string;
  /** Where the trained weights go (.safetensors or .pth), written whole or not at all. */
  out: string;
  /** The attack poisoned into the training split (none: a clean model). */
  attack?: string;
  target?: number;
  attackSeed?: number;
  epochs?: number;
  batchSize?: number;
  optimizer?: 'sgd' | 'adam';
  lr?: number;
  momentum?: number;
  weightDecay?: number;
  schedule?: ScheduleName;
  /** Random crop (padding an eighth of the side) and, for colour images, horizontal flips. */
  augment?: boolean;
  seed?: number;
  threads?: number;
  device?: string;
  cacheDir?: string;
  /** Resume checkpoint, written every epoch (default OUT.ckpt.safetensors). */
  checkpoint?: string;
  /** Per-epoch metrics as JSON lines (default OUT.metrics.jsonl). */
  metrics?: string;
  /** Called once the data, model and attack are ready, before the first epoch. */
  onStart?: (run: { arch: string; source: string; images: number; attack: string | null }) => void;
  onBatch?: TrainRun['onBatch'];
  onEpoch?: (record: EpochRecord) => void;
}

export interface TrainCheckpointResult {
  arch: string;
  attack: string | null;
  target: number | null;
  epochs: number;
  /** The epoch training resumed from (0 for a fresh run). */
  resumedFrom: number;
  /** Training time (this process's share when resumed). */
  seconds: number;
  ba: number;
  asr: number | null;
  ra: number | null;
  history: EpochRecord[];
}

/** The defaults of `mcldef train` (and of the grid's training settings). */
export const TRAIN_DEFAULTS = {
  epochs: 40,
  batchSize: 128,
  optimizer: 'sgd',
  lr: 0.1,
  momentum: 0.9,
  weightDecay: 5e-4,
  schedule: 'cosine',
  augment: true,
} as const;

export function trainCheckpoint(options: TrainCheckpointOptions): TrainCheckpointResult {
  const seed = options.seed ?? 0;
  setNumThreads(options.threads ?? availableParallelism());
  manualSeed(seed);
  useDevice(options.device);
  const train = loadSplit(options.data, 'train', options.cacheDir);
  const test = loadSplit(options.data, 'test', options.cacheDir);
  const { model, arch } = buildModel(options.arch, train, options.weights, seed);
  const attack =
    options.attack === undefined
      ? undefined
      : buildAttack(
          { ...options, attack: options.attack, target: options.target ?? 0, attackSeed: options.attackSeed ?? seed },
          train,
          arch,
          test,
        );
  try {
    options.onStart?.({ arch, source: train.source, images: train.count, attack: attack?.name ?? null });
    const epochs = options.epochs ?? TRAIN_DEFAULTS.epochs;
    const result = trainModel({
      model,
      train,
      test,
      ...(attack === undefined ? {} : { attack }),
      config: {
        epochs,
        batchSize: options.batchSize ?? TRAIN_DEFAULTS.batchSize,
        optimizer: options.optimizer ?? TRAIN_DEFAULTS.optimizer,
        lr: options.lr ?? TRAIN_DEFAULTS.lr,
        momentum: options.momentum ?? TRAIN_DEFAULTS.momentum,
        weightDecay: options.weightDecay ?? TRAIN_DEFAULTS.weightDecay,
        schedule: options.schedule ?? TRAIN_DEFAULTS.schedule,
        seed,
        ...((options.augment ?? TRAIN_DEFAULTS.augment)
          ? { augment: { cropPadding: Math.round(train.height / 8), horizontalFlip: train.channels === 3 } }
          : {}),
      },
      checkpointPath: options.checkpoint ?? `${options.out}.ckpt.safetensors`,
      store: safetensorsStore,
      metricsPath: options.metrics ?? `${options.out}.metrics.jsonl`,
      ...(options.onBatch === undefined ? {} : { onBatch: options.onBatch }),
      ...(options.onEpoch === undefined ? {} : { onEpoch: options.onEpoch }),
    });
    saveWeights(options.out, model.stateDict(), { arch });
    const final = evaluate(model, test, {
      normalization: test.normalization,
      ...(attack === undefined ? {} : { trigger: attack }),
    });
    return {
      arch,
      attack: attack?.name ?? null,
      target: attack === undefined ? null : (options.target ?? 0),
      epochs,
      resumedFrom: result.resumedFrom,
      seconds: result.seconds,
      ba: final.ba,
      asr: attack === undefined ? null : final.asr,
      ra: attack === undefined ? null : final.ra,
      history: result.epochs,
    };
  } finally {
    attack?.dispose();
    model.dispose();
    train.dispose();
    test.dispose();
  }
}
