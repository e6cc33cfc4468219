// The demo's recipe for a small Fashion-MNIST classifier: cnn-small on a seeded subset of the
// training split, 3 epochs of SGD. The demo trains it with a BadNets square; the detection
// benchmark trains it without an attack (clean models that detection must leave alone).
import { type Attack, type AttackOptions, createAttack } from '../attacks/index.js';
import type { ImageSplit } from '../data/dataset.js';
import { subset } from '../data/subset.js';
import { createModel } from '../nn/models/index.js';
import type { Module } from '../nn/module.js';
import { type TrainConfig, type TrainRun, trainModel } from '../train/trainer.js';

export const DEMO_TRAIN_IMAGES = 20000;
export const DEMO_EPOCHS = 3;

export interface DemoModelOptions {
  /** The full training split; a seeded subset of `trainImages` is drawn from it (seed + 1). */
  train: ImageSplit;
  seed: number;
  /** The attack, or null for a clean model. */
  attack: { name: string; target: number; poisonRate?: number; options?: AttackOptions } | null;
  trainImages?: number;
  epochs?: number;
  onBatch?: TrainRun['onBatch'];
}

export function demoTrainConfig(seed: number, epochs = DEMO_EPOCHS): TrainConfig {
  return {
    epochs,
    batchSize: 64,
    optimizer: 'sgd',
    lr: 0.05,
    momentum: 0.9,
    weightDecay: 5e-4,
    schedule: 'cosine',
    seed,
  };
}

/** Trains the demo's cnn-small; the caller disposes the model and the attack. */
export function trainDemoModel(options: DemoModelOptions): { model: Module; attack: Attack | null } {
  const { train: full, seed } = options;
  const train = subset(full, Math.min(1, (options.trainImages ?? DEMO_TRAIN_IMAGES) / full.count), { seed: seed + 1 });
  const geometry = { channels: train.channels, height: train.height, width: train.width };
  const model = createModel('cnn-small', { numClasses: train.numClasses, inChannels: train.channels });
  let attack: Attack | null = null;
  try {
    if (options.attack !== null) {
      attack = createAttack({
        name: options.attack.name,
        target: options.attack.target,
        poisonRate: options.attack.poisonRate ?? 0.1,
        seed,
        numClasses: train.numClasses,
        geometry,
        ...(options.attack.options === undefined ? {} : { options: options.attack.options }),
      });
    }
    trainModel({
      model,
      train,
      ...(attack === null ? {} : { attack }),
      config: demoTrainConfig(seed, options.epochs),
      ...(options.onBatch === undefined ? {} : { onBatch: options.onBatch }),
    });
  } catch (error) {
    model.dispose();
    attack?.dispose();
    throw error;
  } finally {
    if (train !== full) train.dispose();
  }
  return { model, attack };
}
