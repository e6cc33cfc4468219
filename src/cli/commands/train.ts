// mcldef train: train a model, optionally backdoored by an attack; saves the weights.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import { Command, Option } from 'commander';

import { requireOptions } from '../config.js';

import { attackSettings } from '../../pipeline/setup.js';
import { trainCheckpoint } from '../../pipeline/train-checkpoint.js';
import type { ScheduleName } from '../../train/trainer.js';
import {
  type AttackFlags,
  type CommonFlags,
  UsageError,
  addAttackOptions,
  addCommonOptions,
  addModelOptions,
  integer,
  number,
  progressBar,
  runAction,
  say,
  writeJson,
} from '../common.js';

interface TrainFlags extends CommonFlags, AttackFlags {
  arch?: string;
  weights?: string;
  data: string;
  epochs: number;
  batchSize: number;
  optimizer: 'sgd' | 'adam';
  lr: number;
  momentum: number;
  weightDecay: number;
  schedule: ScheduleName;
  augment: boolean;
  out: string;
  metrics?: string;
  checkpoint?: string;
}

export function trainCommand(): Command {
  const command = new Command('train').description(
    'train a model, optionally poisoned by an attack; saves its weights',
  );
  addModelOptions(command, false);
  addAttackOptions(command);
  command
    .addOption(new Option('--epochs <n>', 'training epochs').default(40).argParser(integer('--epochs', 1)))
    .addOption(new Option('--batch-size <n>', 'batch size').default(128).argParser(integer('--batch-size', 1)))
    .addOption(new Option('--optimizer <name>', 'sgd or adam').choices(['sgd', 'adam']).default('sgd'))
    .addOption(new Option('--lr <x>', 'learning rate').default(0.1).argParser(number('--lr', 0)))
    .addOption(new Option('--momentum <x>', 'SGD momentum').default(0.9).argParser(number('--momentum', 0, 1)))
    .addOption(new Option('--weight-decay <x>', 'weight decay').default(5e-4).argParser(number('--weight-decay', 0)))
    .addOption(
      new Option('--schedule <name>', 'learning-rate schedule')
        .choices(['cosine', 'step', 'multistep', 'onecycle', 'constant'])
        .default('cosine'),
    )
    .addOption(new Option('--no-augment', 'no random crop (padding 4) and horizontal flip'))
    .addOption(new Option('--out <file>', 'weights to write (.safetensors or .pth)'))
    .addOption(new Option('--metrics <file>', 'per-epoch metrics as JSON lines (default: OUT.metrics.jsonl)'))
    .addOption(
      new Option('--checkpoint <file>', 'resume checkpoint, written every epoch (default: OUT.ckpt.safetensors)'),
    );
  addCommonOptions(command);
  requireOptions(command, ['--data', '--out']);
  return command.action((flags: TrainFlags) => runAction(() => train(flags)));
}

function train(flags: TrainFlags): void {
  if (!/\.(safetensors|pth|pt|pth\.tar)$/.test(flags.out))
    throw new UsageError(`--out ${flags.out}: use a .safetensors or .pth file name`);
  if (flags.out !== '-' && dirname(flags.out) !== '' && !existsSync(dirname(flags.out)))
    mkdirSync(dirname(flags.out), { recursive: true });
  const checkpoint = flags.checkpoint ?? `${flags.out}.ckpt.safetensors`;
  const bar = progressBar(
    flags,
    'epoch {epoch} |{bar}| {value}/{total} batches | loss {loss} | acc {acc}% | {speed} img/s',
  );
  let barEpoch = -1;
  const result = trainCheckpoint({
    ...attackSettings(flags),
    data: flags.data,
    ...(flags.arch === undefined ? {} : { arch: flags.arch }),
    ...(flags.weights === undefined ? {} : { weights: flags.weights }),
    out: flags.out,
    ...(flags.attack === undefined ? {} : { attack: flags.attack, target: flags.target }),
    ...(flags.attackSeed === undefined ? {} : { attackSeed: flags.attackSeed }),
    epochs: flags.epochs,
    batchSize: flags.batchSize,
    optimizer: flags.optimizer,
    lr: flags.lr,
    momentum: flags.momentum,
    weightDecay: flags.weightDecay,
    schedule: flags.schedule,
    augment: flags.augment,
    seed: flags.seed,
    threads: flags.threads,
    ...(flags.device === undefined ? {} : { device: flags.device }),
    ...(flags.cacheDir === undefined ? {} : { cacheDir: flags.cacheDir }),
    checkpoint,
    ...(flags.metrics === undefined ? {} : { metrics: flags.metrics }),
    onStart: (run) =>
      say(
        flags,
        `training ${run.arch} on ${run.source}: ${run.images} images, ${flags.epochs} epochs${run.attack === null ? '' : `, attack ${run.attack} (${flags.mode}, target ${flags.target}, rate ${flags.poisonRate})`}`,
      ),
    onBatch: (p) => {
      if (bar === null) return;
      if (p.epoch !== barEpoch) {
        if (barEpoch >= 0) bar.stop();
        bar.start(p.batches, 0, { epoch: p.epoch + 1, loss: '-', acc: '-', speed: '-' });
        barEpoch = p.epoch;
      }
      bar.update(p.batch, {
        loss: p.loss.toFixed(3),
        acc: (100 * p.accuracy).toFixed(1),
        speed: p.imagesPerSecond.toFixed(0),
      });
    },
    onEpoch: (record) => {
      bar?.stop();
      barEpoch = -1;
      const attackPart = record.asr === undefined ? '' : `  ASR ${record.asr.toFixed(2)}%`;
      say(
        flags,
        `epoch ${record.epoch + 1}/${flags.epochs}  lr ${record.lr.toPrecision(3)}  loss ${record.loss.toFixed(4)}  train ${record.train_acc.toFixed(2)}%  BA ${record.ba?.toFixed(2)}%${attackPart}  ${record.images_per_second.toFixed(0)} img/s`,
      );
    },
  });
  if (result.resumedFrom > 0) say(flags, `(resumed after epoch ${result.resumedFrom} from ${checkpoint})`);
  say(
    flags,
    `saved ${flags.out}: BA ${result.ba.toFixed(2)}%${result.asr === null ? '' : `, ASR ${result.asr.toFixed(2)}%`} in ${result.seconds.toFixed(0)} s`,
  );
  writeJson(flags.json, {
    arch: result.arch,
    data: flags.data,
    attack: result.attack,
    target: result.target,
    epochs: flags.epochs,
    seconds: result.seconds,
    ba: result.ba,
    asr: result.asr,
    ra: result.ra,
    history: result.history,
  });
}
