// Running one cell of a grid: the backdoored model it needs (trained once into the artifacts
// folder and found there by every other cell that shares it), then the defense with its
// options on the defender's clean subset, then the record. Cells are independent: any
// machine with the artifacts folder can run any of them.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

import '../defenses/index.js';
import { releaseHostMemory } from '../engine/index.js';
import { defendCheckpoint } from '../pipeline/defend-checkpoint.js';
import type { AttackSettings } from '../pipeline/setup.js';
import { trainCheckpoint } from '../pipeline/train-checkpoint.js';
import type { AttackConfig, CellSpec, ModelSpec } from './grid.js';
import { type CellRecord, type ModelRecord, recordBase, writeJsonAtomic } from './store.js';

export const modelWeights = (artifacts: string, id: string): string => join(artifacts, 'models', `${id}.safetensors`);

/** Where a grid model's weights are: its given checkpoint, else the artifacts folder. */
export const weightsOf = (model: ModelSpec, artifacts: string): string =>
  model.weights?.path ?? modelWeights(artifacts, model.id);
const modelRecordPath = (artifacts: string, id: string): string => join(artifacts, 'models', `${id}.json`);

/** Where a cell's defense keeps its progress between rounds (SAU), so that a killed cell continues. */
export const cellCheckpoint = (artifacts: string, id: string): string =>
  join(artifacts, 'checkpoints', `${id}.safetensors`);

/** The model's record when it is trained and in the artifacts folder. */
export function trainedModel(artifacts: string, id: string): ModelRecord | undefined {
  const record = modelRecordPath(artifacts, id);
  if (!existsSync(record) || !existsSync(modelWeights(artifacts, id))) return undefined;
  return JSON.parse(readFileSync(record, 'utf8')) as ModelRecord;
}

/** An attack's settings as the library takes them, files as paths. */
function attackSettingsOf(attack: AttackConfig, artifacts: string): AttackSettings & { attackSeed?: number } {
  const trojanModel = attack['trojan-model'];
  return {
    mode: attack.mode,
    poisonRate: attack['poison-rate'],
    ...(attack['attack-seed'] === undefined ? {} : { attackSeed: attack['attack-seed'] }),
    ...(attack.alpha === undefined ? {} : { alpha: attack.alpha }),
    ...(attack.pattern === undefined ? {} : { pattern: attack.pattern.path }),
    ...(attack.trigger === undefined ? {} : { trigger: attack.trigger.path }),
    ...(attack.mask === undefined ? {} : { mask: attack.mask.path }),
    ...(attack['trojan-watermark'] === undefined ? {} : { trojanWatermark: attack['trojan-watermark'].path }),
    ...(trojanModel === undefined
      ? {}
      : { trojanModel: 'model' in trojanModel ? modelWeights(artifacts, trojanModel.model) : trojanModel.path }),
  };
}

/** The attack as `mcldef defend`/`eval` flags (`--attack … --target …` and its own), files as paths. */
export function attackFlags(attack: AttackConfig, artifacts: string): string[] {
  const settings = attackSettingsOf(attack, artifacts);
  const flags = ['--attack', attack.name, '--target', `${attack.target}`, '--poison-rate', `${attack['poison-rate']}`];
  if (attack.mode !== 'all-to-one') flags.push('--mode', attack.mode);
  const optional: [string, string | number | undefined][] = [
    ['--attack-seed', settings.attackSeed],
    ['--alpha', settings.alpha],
    ['--pattern', settings.pattern],
    ['--trigger', settings.trigger],
    ['--mask', settings.mask],
    ['--trojan-watermark', settings.trojanWatermark],
    ['--trojan-model', settings.trojanModel],
  ];
  for (const [flag, value] of optional) if (value !== undefined) flags.push(flag, `${value}`);
  return flags;
}

/**
 * The model trained (resuming from its checkpoint after an interruption) unless the artifacts
 * folder has it. Weights and record are written whole or not at all, so a second machine that
 * trains the same model at the same time only wastes its time.
 */
export function ensureModel(
  model: ModelSpec,
  artifacts: string,
  log: (line: string) => void = () => {},
  threads?: number,
): ModelRecord {
  if (model.weights !== null) {
    return { id: model.id, label: model.label, ba: null, asr: null, epochs: 0, seconds: 0 };
  }
  const known = trainedModel(artifacts, model.id);
  if (known !== undefined) return known;
  mkdirSync(join(artifacts, 'models'), { recursive: true });
  const weights = modelWeights(artifacts, model.id);
  log(`model ${model.label} (seed ${model.seed}, ${model.id}): training ${model.epochs} epochs`);
  const result = trainCheckpoint({
    data: model.data,
    arch: model.arch,
    out: weights,
    ...(model.attack === null
      ? {}
      : { attack: model.attack.name, target: model.attack.target, ...attackSettingsOf(model.attack, artifacts) }),
    epochs: model.epochs,
    batchSize: model.train['batch-size'],
    optimizer: model.train.optimizer,
    lr: model.train.lr,
    momentum: model.train.momentum,
    weightDecay: model.train['weight-decay'],
    schedule: model.train.schedule,
    augment: model.train.augment,
    seed: model.seed,
    ...(threads === undefined ? {} : { threads }),
  });
  const record: ModelRecord = {
    id: model.id,
    label: model.label,
    ba: result.ba,
    asr: result.asr,
    epochs: model.epochs,
    seconds: result.seconds,
  };
  writeJsonAtomic(modelRecordPath(artifacts, model.id), record);
  log(
    `model ${model.label} (seed ${model.seed}): BA ${result.ba.toFixed(2)}%${result.asr === null ? '' : `, ASR ${result.asr.toFixed(2)}%`} in ${result.seconds.toFixed(0)} s`,
  );
  return record;
}

export interface RunCellOptions {
  artifacts: string;
  log?: (line: string) => void;
  threads?: number;
}

/** Runs a cell to its record; an error becomes a failed record rather than a throw. */
export async function runCell(cell: CellSpec, options: RunCellOptions): Promise<CellRecord> {
  const started = performance.now();
  const log = options.log ?? ((): void => {});
  const base = recordBase(cell, hostname());
  try {
    for (const needed of cell.needs) ensureModel(needed, options.artifacts, log, options.threads);
    const model = ensureModel(cell.model, options.artifacts, log, options.threads);
    const measure = cell.measure?.attack;
    const result = await defendCheckpoint({
      weights: weightsOf(cell.model, options.artifacts),
      data: cell.model.data,
      arch: cell.model.arch,
      method: cell.defense.name,
      methodOptions: cell.defense.options,
      cleanRatio: cell['clean-ratio'],
      ...(measure === undefined
        ? {}
        : { attack: measure.name, target: measure.target, ...attackSettingsOf(measure, options.artifacts) }),
      detect: cell.detect,
      monitor: cell.monitor,
      evidence: cell.evidence,
      verify: cell.verify,
      checkpoint: cellCheckpoint(options.artifacts, cell.id),
      seed: cell.seed,
      ...(options.threads === undefined ? {} : { threads: options.threads }),
    });
    result.model.dispose();
    const { report } = result;
    return {
      ...base,
      status: 'done',
      model,
      before: report.before,
      after: report.after,
      der: report.der,
      changed: report.changed,
      target: report.target,
      detected_target: report.detected_target,
      evidence: report.evidence,
      verification: report.verification,
      seconds: report.seconds,
      // With the time of the processes that worked on it before (resumed from its checkpoint).
      seconds_total: (performance.now() - started) / 1000 + (report.resumed?.seconds ?? 0),
      ...(report.resumed === undefined ? {} : { resumed: report.resumed }),
      finished: new Date().toISOString(),
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    log(`cell ${cell.id} (${cell.model.label} × ${cell.defense.label}, seed ${cell.seed}) failed: ${message}`);
    return {
      ...base,
      status: 'failed',
      error: message.split('\n')[0]!,
      seconds_total: (performance.now() - started) / 1000,
      finished: new Date().toISOString(),
    };
  } finally {
    // The freed tensors' memory is held while the cell runs (engine/memory.ts); a worker
    // that runs cell after cell gives it back between them.
    releaseHostMemory();
  }
}
