// The whole defense run from files, as `mcldef defend` does it: seed, load the data and the
// model, take the defender's clean subset, build the attack whose ASR is measured, run a
// registered defense. Given the same options, the CLI and a script calling this produce the
// same report.
import { availableParallelism } from 'node:os';

import { manualSeed, setNumThreads } from '../engine/autograd.js';
import { useDevice } from '../engine/device.js';
import { parseDataSpec } from '../data/load.js';
import { subset } from '../data/subset.js';
import { kebabCase, type OptionValue, resolveOptions } from '../defenses/options.js';
import { DEFAULT_EVIDENCE_FRACTION, type DefendResult, defend } from '../defenses/pipeline.js';
import type { ProgressEvent } from '../defenses/defense.js';
import { defenseEntry } from '../defenses/registry.js';
import { type AttackSettings, attackSettings, buildAttack, buildModel, loadSplit } from './setup.js';

export interface DefendCheckpointOptions extends AttackSettings {
  /** The suspicious model's weights (.pth, .pth.tar, .pt, .safetensors). */
  weights: string;
  /** KIND:PATH, e.g. cifar10:./data. */
  data: string;
  /** Default: the architecture recorded in the checkpoint, else the zoo model its keys fit. */
  arch?: string;
  /** A registered defense (default 'mcldef'). */
  method?: string;
  /** The method's options by camelCase name (unset: its defaults). */
  methodOptions?: Readonly<Record<string, unknown>>;
  /** Fraction of the training split the defender holds (default 0.05), drawn with `seed`. */
  cleanRatio?: number;
  /** The attack's target; told to the defense unless `detect` is set. */
  target?: number;
  /** Find the target by detection even though `target` is given (it then only names the attack's). */
  detect?: boolean;
  /** The attack whose ASR is measured (never shown to the defense), and its settings. */
  attack?: string;
  attackSeed?: number;
  /** Test images for the report's per-epoch chart (default 500; 0: none). */
  monitor?: number;
  /** Fraction of the defender's clean data held out as evidence (default 0.1; 0: none). */
  evidence?: number;
  /** Scan the defended model again (MCLDef's detection scan). */
  verify?: boolean;
  /** Where a defense that runs in rounds (SAU) saves and resumes its progress; removed when done. */
  checkpoint?: string;
  seed?: number;
  /** CPU threads for libtorch (default: every core, as the CLI). */
  threads?: number;
  /** 'cpu', 'cuda', 'cuda:N'; default: CUDA where the libtorch in use has it. */
  device?: string;
  cacheDir?: string;
  log?: (line: string) => void;
  progress?: (event: ProgressEvent) => void;
}

/** Options that say where things are read from or how the run is shown, not what it computes. */
const NOT_RECORDED = new Set(['methodOptions', 'log', 'progress', 'cacheDir', 'checkpoint']);

export async function defendCheckpoint(options: DefendCheckpointOptions): Promise<DefendResult> {
  const started = performance.now();
  const seed = options.seed ?? 0;
  const method = options.method ?? 'mcldef';
  const entry = defenseEntry(method);
  const methodValues = resolveOptions(entry.options, options.methodOptions ?? {}, `defense '${method}'`);
  // The CLI's default, so that a script and the command compute alike (libtorch's own default
  // can be fewer threads, which rounds differently).
  const threads = options.threads ?? availableParallelism();
  setNumThreads(threads);
  manualSeed(seed);
  const device = useDevice(options.device);
  const { kind } = parseDataSpec(options.data);
  const train = loadSplit(options.data, 'train', options.cacheDir);
  const test = loadSplit(options.data, 'test', options.cacheDir);
  const clean = subset(train, options.cleanRatio ?? 0.05, { seed });
  train.dispose();
  const { model, arch } = buildModel(options.arch, clean, options.weights, seed);
  let attack;
  try {
    attack =
      options.attack === undefined
        ? undefined
        : buildAttack(
            {
              ...attackSettings(options),
              attack: options.attack,
              target: options.target ?? 0,
              attackSeed: options.attackSeed ?? seed,
            },
            test,
            arch,
          );
    const told = options.target !== undefined && options.detect !== true ? options.target : undefined;
    // Every option that shapes the run, defaults included, under its flag name: a config file
    // made of them repeats the run even after a default changes.
    const resolved = {
      ...options,
      arch,
      method,
      device,
      seed,
      threads,
      cleanRatio: options.cleanRatio ?? 0.05,
      monitor: options.monitor ?? 500,
      evidence: options.evidence ?? DEFAULT_EVIDENCE_FRACTION,
      verify: options.verify ?? false,
      ...(options.attack === undefined
        ? {}
        : { mode: options.mode ?? 'all-to-one', poisonRate: options.poisonRate ?? 0.1 }),
    };
    const record: Record<string, OptionValue> = {};
    for (const [name, value] of Object.entries(resolved)) {
      if (
        !NOT_RECORDED.has(name) &&
        (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean')
      )
        record[kebabCase(name)] = value;
    }
    for (const [name, value] of Object.entries(methodValues)) if (value !== undefined) record[kebabCase(name)] = value;
    const loadSeconds = (performance.now() - started) / 1000;
    const result = await defend({
      model,
      clean,
      test,
      ...(attack === undefined ? {} : { attack }),
      method,
      options: methodValues,
      ...(told === undefined ? {} : { target: told }),
      seed,
      device,
      dataKind: kind,
      monitor: options.monitor ?? 500,
      evidence: options.evidence ?? DEFAULT_EVIDENCE_FRACTION,
      verify: options.verify ?? false,
      ...(options.checkpoint === undefined ? {} : { checkpoint: options.checkpoint }),
      modelName: options.weights,
      dataName: options.data,
      recordOptions: record,
      ...(options.log === undefined ? {} : { log: options.log }),
      ...(options.progress === undefined ? {} : { progress: options.progress }),
    });
    const { total: _total, ...stages } = result.report.seconds;
    result.report.seconds = {
      ...stages,
      load: loadSeconds,
      total: (performance.now() - started) / 1000 + (result.report.resumed?.seconds ?? 0),
    };
    return result;
  } catch (error) {
    model.dispose();
    throw error;
  } finally {
    attack?.dispose();
    clean.dispose();
    test.dispose();
  }
}
