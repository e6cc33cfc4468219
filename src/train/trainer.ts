// The training loop: SGD or Adam, LR schedules, weight decay, augmentation, optional
// poisoning, per-epoch evaluation, a checkpoint after every epoch (resumed when the same
// run starts again), per-epoch metrics as JSON lines, and a progress callback.
import { appendFileSync } from 'node:fs';
import { createHash } from 'node:crypto';

import * as F from '../engine/functional.js';
import { dispose, tidy } from '../engine/scope.js';
import { manualSeed, noGrad } from '../engine/autograd.js';
import type { Tensor } from '../engine/tensor.js';
import { Adam } from '../engine/optim/adam.js';
import { SGD } from '../engine/optim/sgd.js';
import {
  CosineAnnealingLR,
  FunctionLR,
  type LRScheduler,
  MultiStepLR,
  OneCycleLR,
  StepLR,
} from '../engine/optim/lr-scheduler.js';
import type { Attack } from '../attacks/attack.js';
import type { AttackTrainingHook } from '../attacks/training-hook.js';
import type { AugmentOptions } from '../data/augment.js';
import type { ImageSplit } from '../data/dataset.js';
import { prefixed, unprefixed } from '../io/index.js';
import { type Metrics, evaluate } from '../eval/metrics.js';
import type { Module } from '../nn/module.js';
import { PoisonedBatches } from './poisoned-batches.js';

export type ScheduleName = 'cosine' | 'step' | 'multistep' | 'onecycle' | 'constant';

export interface TrainConfig {
  epochs: number;
  batchSize: number;
  optimizer: 'sgd' | 'adam';
  lr: number;
  momentum: number;
  weightDecay: number;
  schedule: ScheduleName;
  /** multistep milestones (epochs); default half and three quarters of the run. */
  milestones?: readonly number[];
  /** step/multistep decay factor. */
  gamma?: number;
  augment?: AugmentOptions;
  seed: number;
}

export interface EpochRecord {
  epoch: number;
  lr: number;
  loss: number;
  train_acc: number;
  ba?: number;
  asr?: number;
  ra?: number;
  /** The attack training hook's extra loss, averaged over the samples of the batches it returned one for. */
  attack_loss?: number;
  seconds: number;
  images_per_second: number;
}

/** How checkpoints are stored (safetensors in the CLI). */
export interface CheckpointStore {
  exists(path: string): boolean;
  /** Removes the checkpoint once the run is complete. */
  remove(path: string): void;
  save(path: string, tensors: ReadonlyMap<string, Tensor>, metadata: Record<string, string>): void;
  load(path: string): { tensors: Map<string, Tensor>; metadata: Record<string, string> };
}

export interface TrainRun {
  model: Module;
  train: ImageSplit;
  /** Evaluated after each epoch when given. */
  test?: ImageSplit;
  attack?: Attack;
  config: TrainConfig;
  /** Resume checkpoint path; written after every epoch, removed when the run completes. */
  checkpointPath?: string;
  store?: CheckpointStore;
  /** Per-epoch metrics are appended here as JSON lines. */
  metricsPath?: string;
  onBatch?: (progress: {
    epoch: number;
    batch: number;
    batches: number;
    loss: number;
    accuracy: number;
    imagesPerSecond: number;
  }) => void;
  onEpoch?: (record: EpochRecord) => void;
  /** Checked between batches; when it returns true the run stops after saving nothing more. */
  shouldStop?: () => boolean;
}

export interface TrainResult {
  epochs: EpochRecord[];
  /** The epoch training resumed from (0 for a fresh run). */
  resumedFrom: number;
  final?: Metrics;
  seconds: number;
  stopped: boolean;
}

function makeOptimizer(model: Module, config: TrainConfig): SGD | Adam {
  return config.optimizer === 'sgd'
    ? new SGD(model.parameters(), { lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay })
    : new Adam(model.parameters(), { lr: config.lr, weightDecay: config.weightDecay });
}

/** Per-epoch schedules are stepped each epoch; OneCycle each batch. */
function makeSchedule(optimizer: SGD | Adam, config: TrainConfig, batchesPerEpoch: number): LRScheduler {
  switch (config.schedule) {
    case 'cosine':
      return new CosineAnnealingLR(optimizer, config.epochs);
    case 'step':
      return new StepLR(optimizer, Math.max(1, Math.round(config.epochs / 3)), config.gamma ?? 0.1);
    case 'multistep':
      return new MultiStepLR(
        optimizer,
        config.milestones ?? [Math.round(config.epochs / 2), Math.round((3 * config.epochs) / 4)],
        config.gamma ?? 0.1,
      );
    case 'onecycle':
      return new OneCycleLR(optimizer, { maxLr: config.lr, totalSteps: config.epochs * batchesPerEpoch });
    case 'constant':
      return new FunctionLR(optimizer, () => config.lr);
  }
}

/** The attack's trainable tensors and the optimizer that steps them (see AttackTrainingHook). */
interface HookTraining {
  hook: AttackTrainingHook;
  parameters: Tensor[];
  optimizer: Adam | undefined;
}

function hookTraining(attack: Attack | undefined): HookTraining | undefined {
  const hook = attack?.trainingHook();
  if (hook === undefined) return undefined;
  const parameters = hook.parameters();
  if (parameters.some((p) => !p.requiresGrad)) {
    throw new Error(`attack ${attack!.name}: its training hook's parameters must require gradients`);
  }
  const optimizer = parameters.length === 0 ? undefined : new Adam(parameters, { lr: hook.lr ?? 1e-3 });
  return { hook, parameters, optimizer };
}

/**
 * Identifies a run: a checkpoint is resumed only by the run that wrote it. `hookParameters`:
 * the attack's trainable tensors, where its training hook has any list.
 */
export function runIdentity(run: TrainRun, hookParameters?: readonly Tensor[]): string {
  const description = {
    config: run.config,
    train: [run.train.source, run.train.count],
    attack: run.attack === undefined ? null : [run.attack.name, run.attack.config],
    parameters: run.model.parameters().map((p) => p.shape),
    // Only when there are any, so that the identities of existing runs stay the same.
    ...(hookParameters === undefined ? {} : { attackParameters: hookParameters.map((p) => p.shape) }),
  };
  return createHash('sha256').update(JSON.stringify(description)).digest('hex').slice(0, 16);
}

export function trainModel(run: TrainRun): TrainResult {
  const { model, config } = run;
  if (!(config.epochs >= 1)) throw new RangeError(`epochs must be ≥ 1, got ${config.epochs}`);
  const started = performance.now();
  const batches = new PoisonedBatches(run.train, run.attack, {
    batchSize: config.batchSize,
    seed: config.seed,
    ...(config.augment === undefined ? {} : { augment: config.augment }),
  });
  const optimizer = makeOptimizer(model, config);
  const attackTraining = hookTraining(run.attack);
  const schedule = makeSchedule(optimizer, config, batches.length);
  const identity = runIdentity(run, attackTraining?.parameters);
  let firstEpoch = 0;
  const records: EpochRecord[] = [];

  if (run.checkpointPath !== undefined && run.store !== undefined && run.store.exists(run.checkpointPath)) {
    const saved = run.store.load(run.checkpointPath);
    if (saved.metadata.run === identity) {
      model.loadStateDict(unprefixed(saved.tensors, 'model.'));
      optimizer.importState({
        tensors: unprefixed(saved.tensors, 'optimizer.'),
        numbers: JSON.parse(saved.metadata.optimizer ?? '{}') as Record<string, number>,
      });
      if (attackTraining !== undefined) restoreAttackState(attackTraining, saved);
      firstEpoch = Number(saved.metadata.epoch) + 1;
      records.push(...(JSON.parse(saved.metadata.records ?? '[]') as EpochRecord[]));
      for (let e = 0; e < firstEpoch * (config.schedule === 'onecycle' ? batches.length : 1); e++) schedule.step();
    }
    dispose([...saved.tensors.values()]);
  }

  let stopped = false;
  attackTraining?.hook.start?.({ model, epochs: config.epochs, firstEpoch, batchesPerEpoch: batches.length });
  try {
    for (let epoch = firstEpoch; epoch < config.epochs && !stopped; epoch++) {
      // Each epoch's randomness (dropout, WaNet noise) depends only on (seed, epoch): resume repeats it.
      manualSeed(config.seed * 1000 + epoch);
      model.train();
      const epochStart = performance.now();
      const lr = optimizer.paramGroups[0]!.lr;
      let seen = 0;
      let lossSum = 0;
      let correct = 0;
      let attackLossSum = 0;
      let attackLossSeen = 0;
      let batchIndex = 0;
      for (const batch of batches.epoch(epoch)) {
        const [loss, hits, attackLoss] = tidy(() => {
          const logits = model.forward(batch.images);
          const loss = F.crossEntropy(logits, batch.labels);
          const extra = attackTraining?.hook.loss?.({
            model,
            images: batch.images,
            labels: batch.labels,
            logits,
            indices: batch.indices,
            poisoned: batch.poisoned,
            cross: batch.cross,
            normalization: run.train.normalization,
            numClasses: run.train.numClasses,
            epoch,
            batch: batchIndex,
          });
          if (extra !== undefined && extra.numel !== 1) {
            throw new Error(
              `attack ${run.attack!.name}: the training hook's loss must be a scalar, got [${extra.shape}]`,
            );
          }
          optimizer.zeroGrad();
          attackTraining?.optimizer?.zeroGrad();
          (extra === undefined ? loss : loss.add(extra)).backward();
          optimizer.step();
          attackTraining?.optimizer?.step();
          return [loss.item(), logits.argmax(1).eq(batch.labels).sum().item(), extra?.item()] as const;
        });
        batch.images.dispose();
        batch.labels.dispose();
        for (const [name, value] of [
          ['loss', loss],
          ['attack loss', attackLoss ?? 0],
        ] as const) {
          if (!Number.isFinite(value)) {
            throw new Error(
              `training diverged: the ${name} is ${value} at epoch ${epoch}, batch ${batchIndex} (lower the learning rate)`,
            );
          }
        }
        if (attackLoss !== undefined) {
          attackLossSum += attackLoss * batch.size;
          attackLossSeen += batch.size;
        }
        if (config.schedule === 'onecycle') schedule.step();
        seen += batch.size;
        lossSum += loss * batch.size;
        correct += hits;
        batchIndex++;
        run.onBatch?.({
          epoch,
          batch: batchIndex,
          batches: batches.length,
          loss: lossSum / seen,
          accuracy: correct / seen,
          imagesPerSecond: seen / ((performance.now() - epochStart) / 1000),
        });
        if (run.shouldStop?.() === true) {
          stopped = true;
          break;
        }
      }
      if (stopped) break;
      if (config.schedule !== 'onecycle') schedule.step();
      const trainSeconds = (performance.now() - epochStart) / 1000;
      const record: EpochRecord = {
        epoch,
        lr,
        loss: lossSum / seen,
        train_acc: (100 * correct) / seen,
        seconds: trainSeconds,
        images_per_second: seen / trainSeconds,
      };
      if (attackLossSeen > 0) record.attack_loss = attackLossSum / attackLossSeen;
      if (run.test !== undefined) {
        const metrics = evaluate(model, run.test, {
          normalization: run.test.normalization,
          ...(run.attack === undefined ? {} : { trigger: run.attack }),
        });
        record.ba = metrics.ba;
        if (run.attack !== undefined) {
          record.asr = metrics.asr;
          record.ra = metrics.ra;
        }
      }
      records.push(record);
      if (run.metricsPath !== undefined) appendFileSync(run.metricsPath, JSON.stringify(record) + '\n');
      if (run.checkpointPath !== undefined && run.store !== undefined) {
        saveCheckpoint(run, identity, epoch, optimizer, records, attackTraining);
      }
      run.onEpoch?.(record);
    }
  } finally {
    attackTraining?.optimizer?.dispose();
    attackTraining?.hook.end?.();
  }
  optimizer.dispose();
  if (!stopped && run.checkpointPath !== undefined) run.store?.remove(run.checkpointPath);
  return { epochs: records, resumedFrom: firstEpoch, seconds: (performance.now() - started) / 1000, stopped };
}

function saveCheckpoint(
  run: TrainRun,
  identity: string,
  epoch: number,
  optimizer: SGD | Adam,
  records: EpochRecord[],
  attackTraining: HookTraining | undefined,
): void {
  const path = run.checkpointPath!;
  const modelState = run.model.stateDict();
  const optimizerState = optimizer.exportState();
  const attackState = attackTraining?.optimizer?.exportState();
  const tensors = new Map<string, Tensor>([
    ...prefixed(modelState, 'model.'),
    ...prefixed(optimizerState.tensors, 'optimizer.'),
    // Copies, as the parameters stay in training.
    ...(attackTraining?.parameters ?? []).map((p, i) => [`attack.${i}`, noGrad(() => p.clone())] as const),
    ...prefixed(attackState?.tensors ?? new Map<string, Tensor>(), 'attack-optimizer.'),
  ]);
  try {
    run.store!.save(path, tensors, {
      run: identity,
      epoch: String(epoch),
      optimizer: JSON.stringify(optimizerState.numbers),
      ...(attackState === undefined ? {} : { attackOptimizer: JSON.stringify(attackState.numbers) }),
      records: JSON.stringify(records),
    });
  } finally {
    dispose([...tensors.values()]);
  }
}

/** Puts a checkpoint's trigger parameters and their optimizer state back. */
function restoreAttackState(
  attackTraining: HookTraining,
  saved: { tensors: Map<string, Tensor>; metadata: Record<string, string> },
): void {
  attackTraining.parameters.forEach((parameter, i) => {
    const value = saved.tensors.get(`attack.${i}`);
    if (value === undefined) throw new Error(`the checkpoint lacks the attack's parameter ${i}`);
    noGrad(() => parameter.copy_(value));
  });
  attackTraining.optimizer?.importState({
    tensors: unprefixed(saved.tensors, 'attack-optimizer.'),
    numbers: JSON.parse(saved.metadata.attackOptimizer ?? '{}') as Record<string, number>,
  });
}
