// Shared pieces of the command line: flag parsing, data and attack set-up, JSON output,
// progress bars, and turning errors into one clear line and a non-zero exit.

import { availableParallelism } from 'node:os';

import { Command, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';

import { manualSeed, setNumThreads } from '../engine/autograd.js';
import { useDevice } from '../engine/device.js';
import { type Attack, type AttackMode, attackNames } from '../attacks/index.js';
import type { ImageSplit } from '../data/dataset.js';
import { writeFileAtomic } from '../io/checkpoint.js';
import { modelNames } from '../nn/models/index.js';
import type { Classifier } from '../nn/models/classifier.js';
import * as setup from '../pipeline/setup.js';
import type { ProgressEvent } from '../defenses/defense.js';

export class UsageError extends Error {
  override name = 'UsageError';
}

export function integer(name: string, min = -Infinity): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min)
      throw new InvalidArgumentError(`${name} must be an integer${min > -Infinity ? ` ≥ ${min}` : ''}`);
    return parsed;
  };
}

export function number(name: string, min = -Infinity, max = Infinity): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}]`);
    }
    return parsed;
  };
}

/** Flags every command shares (SPEC §6). */
export function addCommonOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--threads <n>', 'CPU threads for libtorch')
        .default(availableParallelism())
        .argParser(integer('--threads', 1)),
    )
    .addOption(new Option('--seed <n>', 'random seed').default(0).argParser(integer('--seed', 0)))
    .addOption(new Option('--json <file>', "write the results as JSON to FILE ('-' for stdout)"))
    .addOption(new Option('--cache-dir <dir>', 'decoded-dataset cache folder (default ~/.cache/mcldef/datasets)'))
    .addOption(
      new Option('--device <device>', 'cpu, cuda or cuda:N (default: CUDA where the libtorch in use has it, else cpu)'),
    )
    .addOption(
      new Option(
        '--config <file>',
        "options from a YAML or JSON file (keys: long flag names, e.g. 'clean-ratio: 0.05'; a report.json's options repeat its run); flags on the command line win",
      ),
    )
    .addOption(
      new Option('--quiet', 'no progress output (bars, scan and epoch lines); results and errors still print'),
    );
}

export function addModelOptions(command: Command, weightsRequired: boolean): Command {
  return command
    .addOption(
      new Option(
        '--arch <name>',
        `architecture: ${modelNames().join(', ')} (default: the one recorded in --weights, else the one its keys fit; wrn-16-1 without weights)`,
      ),
    )
    .addOption(
      weightsRequired
        ? new Option('--weights <file>', 'model weights (.pth, .pth.tar, .pt or .safetensors)')
        : new Option('--weights <file>', 'initial weights (.pth or .safetensors)'),
    )
    .addOption(
      new Option(
        '--data <kind:path>',
        'dataset, e.g. cifar10:./data (kinds: cifar10, cifar100, gtsrb, imagefolder, mnist, fashion-mnist)',
      ),
    );
}

export function addAttackOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--attack <name>', `attack: ${attackNames().join(', ')}`).argParser((name: string) => {
        if (!attackNames().includes(name))
          throw new InvalidArgumentError(`unknown attack '${name}'; known attacks: ${attackNames().join(', ')}`);
        return name;
      }),
    )
    .addOption(new Option('--target <k>', 'target class (all-to-one)').default(0).argParser(integer('--target', 0)))
    .addOption(
      new Option('--mode <mode>', 'all-to-one or all-to-all')
        .choices(['all-to-one', 'all-to-all'])
        .default('all-to-one'),
    )
    .addOption(
      new Option('--poison-rate <r>', 'fraction of the training set poisoned')
        .default(0.1)
        .argParser(number('--poison-rate', 0, 1)),
    )
    .addOption(
      new Option('--alpha <a>', 'blended: blend weight (0.2); sig: signal scale (1)').argParser(
        number('--alpha', 0, 1),
      ),
    )
    .addOption(new Option('--pattern <file>', 'blended: trigger image (default: seeded noise)'))
    .addOption(new Option('--trigger <file>', 'patch: trigger image'))
    .addOption(new Option('--mask <file>', 'patch: mask image (non-zero = trigger)'))
    .addOption(new Option('--trojan-watermark <file>', 'trojan: watermark image for the corner square'))
    .addOption(
      new Option('--trojan-model <file>', 'trojan: clean weights (same --arch) to generate the watermark against'),
    )
    .addOption(
      new Option(
        '--attack-seed <n>',
        'seed of the trigger and of the poisoned-sample choice (default: --seed)',
      ).argParser(integer('--attack-seed', 0)),
    );
}

export interface CommonFlags {
  threads: number;
  seed: number;
  json?: string;
  cacheDir?: string;
  device?: string;
  config?: string;
  quiet?: boolean;
}

export interface AttackFlags extends setup.AttackSettings {
  attack?: string;
  target: number;
  mode: AttackMode;
  poisonRate: number;
  attackSeed?: number;
}

/**
 * Thread count, libtorch's generator seeded by --seed so that every run repeats, and the
 * device new tensors go to (--device; asking for CUDA where there is none is an error).
 */
export function applyCommon(flags: CommonFlags): void {
  setNumThreads(flags.threads);
  manualSeed(flags.seed);
  useDevice(flags.device);
}

export function loadSplit(spec: string, split: 'train' | 'test', flags: CommonFlags): ImageSplit {
  return setup.loadSplit(spec, split, flags.cacheDir);
}

/**
 * The model the flags name: --arch, or the checkpoint's recorded architecture, or the zoo model
 * its keys fit; libtorch's generator is seeded again after (see setup.buildModel).
 */
export function buildModel(
  flags: { arch?: string; weights?: string; seed: number },
  split: ImageSplit,
): { model: Classifier; arch: string } {
  return setup.buildModel(flags.arch, split, flags.weights, flags.seed);
}

/** The attack the flags name (undefined when none), checked against the data. */
export function buildAttack(
  flags: AttackFlags & CommonFlags,
  split: ImageSplit,
  arch: string,
  test: ImageSplit = split,
): Attack | undefined {
  if (flags.attack === undefined) return undefined;
  return setup.buildAttack(
    { ...flags, attack: flags.attack, attackSeed: flags.attackSeed ?? flags.seed },
    split,
    arch,
    test,
  );
}

/** Writes results to --json (a file, atomically, or stdout for '-'). */
export function writeJson(target: string | undefined, value: unknown): void {
  if (target === undefined) return;
  const text = JSON.stringify(value, null, 2) + '\n';
  if (target === '-') process.stdout.write(text);
  else writeFileAtomic(target, [Buffer.from(text, 'utf8')]);
}

/** Human-readable lines go to stderr when --json - owns stdout. */
export function say(flags: CommonFlags, line: string): void {
  if (flags.json === '-') process.stderr.write(line + '\n');
  else process.stdout.write(line + '\n');
}

export function progressBar(flags: CommonFlags, format: string): cliProgress.SingleBar | null {
  if (flags.quiet === true || !process.stderr.isTTY) return null;
  return new cliProgress.SingleBar(
    { format, stream: process.stderr, hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
}

/** Runs a command body, printing any error as one clear line and exiting non-zero. */
export async function runAction(body: () => void | Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`mcldef: error: ${message}\n`);
    if (process.env.MCLDEF_DEBUG === '1' && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    process.exitCode = 1;
  }
}

/** A progress event as one line (`  class 3: size 42.0 (9.1 s)`), unless --quiet. */
export function progressLine(flags: CommonFlags, event: ProgressEvent): void {
  if (flags.quiet === true || event.message === undefined) return;
  say(flags, `  ${event.message}`);
}
