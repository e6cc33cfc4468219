// A comparison grid from one YAML (or JSON) file: datasets × models × attacks × defenses ×
// seeds, expanded into cells. A cell's id is a hash of its fully resolved configuration
// (defaults filled in, trigger files by content), so an unchanged cell keeps its id and any
// changed option gives a new one. Backdoored models are shared: one per attack and seed,
// with an id of their own. Validation errors name the file, the line and the key.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';

import { LineCounter, type Node, isMap, isScalar, isSeq, parseDocument } from 'yaml';

import { attackNames } from '../attacks/registry.js';
import { parseDataSpec } from '../data/load.js';
import '../defenses/index.js';
import { camelCase, kebabCase, type OptionSpec, type OptionValue, parseOptionValue } from '../defenses/options.js';
import { defenseEntry, defenseNames } from '../defenses/registry.js';
import { DEFAULT_EVIDENCE_FRACTION } from '../defenses/pipeline.js';
import { modelNames } from '../nn/models/index.js';
import { TRAIN_DEFAULTS } from '../pipeline/train-checkpoint.js';

/** An error in a grid file: `grid.yaml:12: attacks[0].poison-rate: …`. */
export class GridError extends Error {
  override name = 'GridError';
}

/** A trigger or weights file an attack reads: where it is, and its content's hash (for ids). */
export interface FileRef {
  path: string;
  sha256: string;
}

export interface TrainSettings {
  'batch-size': number;
  optimizer: 'sgd' | 'adam';
  lr: number;
  momentum: number;
  'weight-decay': number;
  schedule: 'cosine' | 'step' | 'multistep' | 'onecycle' | 'constant';
  augment: boolean;
}

/** The attack poisoned into a model: the `mcldef train` attack flags, resolved. */
export interface AttackConfig {
  name: string;
  target: number;
  mode: 'all-to-one' | 'all-to-all';
  'poison-rate': number;
  'attack-seed'?: number;
  alpha?: number;
  pattern?: FileRef;
  trigger?: FileRef;
  mask?: FileRef;
  'trojan-watermark'?: FileRef;
  /** Clean weights to generate the trojan watermark against: a file, or another entry's model. */
  'trojan-model'?: FileRef | { model: string };
}

/** One model to train (backdoored, or clean when `attack` is null). */
export interface ModelSpec {
  id: string;
  /** The attack entry's label (e.g. `badnets-grid`, `clean`). */
  label: string;
  /** KIND:PATH with the path made absolute. */
  data: string;
  arch: string;
  seed: number;
  epochs: number;
  train: TrainSettings;
  attack: AttackConfig | null;
  /** A model given as a checkpoint (e.g. the authors' released one): used as it is, never trained. */
  weights: FileRef | null;
}

/** How ASR is measured on a cell: the model's attack, or for a clean model the one named. */
export interface MeasureConfig {
  attack: AttackConfig;
}

export interface CellSpec {
  id: string;
  model: ModelSpec;
  /** Models this cell's model needs first (a trojan's clean model), in training order. */
  needs: ModelSpec[];
  measure: MeasureConfig | null;
  defense: { label: string; name: string; options: Record<string, OptionValue> };
  'clean-ratio': number;
  evidence: number;
  /** The target is found by the defense (true) or told to it. */
  detect: boolean;
  monitor: number;
  /** Re-scan the defended model and record the verification (`mcldef defend --verify`). */
  verify: boolean;
  seed: number;
}

export interface Grid {
  /** The file it was read from (absolute), or null. */
  file: string | null;
  name: string;
  models: ModelSpec[];
  cells: CellSpec[];
}

const TOP_KEYS = [
  'name',
  'description',
  'data',
  'arch',
  'seeds',
  'epochs',
  'train',
  'clean-ratio',
  'evidence',
  'detect',
  'monitor',
  'verify',
  'attacks',
  'defenses',
];
/** Grid keys a defense entry may set for its own cells. */
const CELL_KEYS = ['clean-ratio', 'evidence', 'detect', 'monitor', 'verify'];
const TRAIN_KEYS = Object.keys(TRAIN_DEFAULTS)
  .filter((key) => key !== 'epochs')
  .map(kebabCase);
const ATTACK_KEYS = [
  'name',
  'label',
  'target',
  'mode',
  'poison-rate',
  'attack-seed',
  'alpha',
  'pattern',
  'trigger',
  'mask',
  'trojan-watermark',
  'trojan-model',
  'epochs',
  'measure-with',
  'weights',
];
const FILE_KEYS = ['pattern', 'trigger', 'mask', 'trojan-watermark', 'trojan-model'] as const;

/** A stable JSON text: object keys sorted at every level. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const hashOf = (value: unknown): string => createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 16);

/** The configuration a model's id hashes: files by content, not by where they lie. */
function modelIdentity(model: Omit<ModelSpec, 'id' | 'label'>, dataAsWritten: string): unknown {
  // A given checkpoint is its content (trained elsewhere, the same for every seed).
  if (model.weights !== null) return { data: dataAsWritten, arch: model.arch, weights: model.weights.sha256 };
  const attack =
    model.attack === null
      ? null
      : Object.fromEntries(
          Object.entries(model.attack).map(([key, value]) => [
            key,
            typeof value === 'object' && value !== null && 'sha256' in value ? { sha256: value.sha256 } : value,
          ]),
        );
  return { data: dataAsWritten, arch: model.arch, seed: model.seed, epochs: model.epochs, train: model.train, attack };
}

/** Where each key of the document is (path like `attacks.0.target` → line). */
function keyLines(
  node: Node | null | undefined,
  counter: LineCounter,
  prefix: string,
  lines: Map<string, number>,
): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const path = prefix === '' ? key : `${prefix}.${key}`;
      const start = isScalar(pair.key) && pair.key.range ? pair.key.range[0] : 0;
      lines.set(path, counter.linePos(start).line);
      keyLines(pair.value as Node | null, counter, path, lines);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, index) => {
      const path = `${prefix}.${index}`;
      const start = (item as Node).range?.[0];
      if (start !== undefined) lines.set(path, counter.linePos(start).line);
      keyLines(item as Node, counter, path, lines);
    });
  }
}

/** Reads, checks and expands a grid file. */
export function loadGrid(path: string): Grid {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new GridError(`grid ${path}: ${code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  return parseGrid(text, resolve(path));
}

/** Checks and expands a grid given as text; `file` names it in errors and anchors relative paths. */
export function parseGrid(text: string, file: string | null = null): Grid {
  const label = file ?? 'grid';
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    throw new GridError(`${label}:${counter.linePos(first.pos[0]).line}: not valid YAML or JSON (${first.code})`);
  }
  const lines = new Map<string, number>();
  keyLines(doc.contents, counter, '', lines);
  const fail = (path: string, message: string): never => {
    let line = lines.get(path);
    for (let shorter = path; line === undefined && shorter.includes('.');) {
      shorter = shorter.slice(0, shorter.lastIndexOf('.'));
      line = lines.get(shorter);
    }
    const shown = path.replace(/\.(\d+)(?=\.|$)/g, '[$1]');
    throw new GridError(`${label}:${line ?? 1}: ${shown === '' ? '' : `${shown}: `}${message}`);
  };
  const root: unknown = doc.toJS();
  if (root === null || typeof root !== 'object' || Array.isArray(root)) {
    return fail('', 'expected a mapping with data, arch, attacks and defenses');
  }
  const top = root as Record<string, unknown>;
  const base = file === null ? process.cwd() : dirname(file);

  const checkKeys = (value: Record<string, unknown>, known: readonly string[], at: string, what: string): void => {
    for (const key of Object.keys(value)) {
      if (!known.includes(key))
        fail(at === '' ? key : `${at}.${key}`, `unknown key for ${what} (known: ${known.join(', ')})`);
    }
  };
  const mapping = (value: unknown, at: string): Record<string, unknown> => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail(at, 'expected a mapping');
    return value as Record<string, unknown>;
  };
  const numberAt = (value: unknown, at: string, min: number, max: number, integer = false): number => {
    if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      value < min ||
      value > max ||
      (integer && !Number.isInteger(value))
    ) {
      return fail(
        at,
        `expected ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got ${JSON.stringify(value)}`,
      );
    }
    return value;
  };
  const stringAt = (value: unknown, at: string): string => {
    if (typeof value !== 'string' || value === '')
      return fail(at, `expected a non-empty string, got ${JSON.stringify(value)}`);
    return value;
  };
  const booleanAt = (value: unknown, at: string): boolean => {
    if (typeof value !== 'boolean') return fail(at, `expected true or false, got ${JSON.stringify(value)}`);
    return value;
  };
  const fileAt = (value: unknown, at: string): FileRef => {
    const given = stringAt(value, at);
    const path = isAbsolute(given) ? given : resolve(base, given);
    if (!existsSync(path)) return fail(at, `no such file: ${path}`);
    return { path, sha256: createHash('sha256').update(readFileSync(path)).digest('hex') };
  };

  checkKeys(top, TOP_KEYS, '', 'a grid');
  for (const key of ['data', 'attacks', 'defenses']) if (top[key] === undefined) fail('', `missing key '${key}'`);
  const dataAsWritten = stringAt(top.data, 'data');
  let data: string;
  try {
    const colon = dataAsWritten.indexOf(':');
    const path = colon < 0 ? '' : dataAsWritten.slice(colon + 1);
    const kind = colon < 0 ? dataAsWritten : dataAsWritten.slice(0, colon);
    data = path === '' ? kind : `${kind}:${isAbsolute(path) ? path : resolve(base, path)}`;
    parseDataSpec(data);
  } catch (error) {
    return fail('data', (error as Error).message);
  }
  const arch = top.arch === undefined ? 'wrn-16-1' : stringAt(top.arch, 'arch');
  if (!modelNames().includes(arch)) fail('arch', `unknown architecture '${arch}' (known: ${modelNames().join(', ')})`);
  const seedsValue = top.seeds ?? [0];
  if (!Array.isArray(seedsValue) || seedsValue.length === 0) fail('seeds', 'expected a non-empty list of seeds');
  const seeds = (seedsValue as unknown[]).map((seed, i) => numberAt(seed, `seeds.${i}`, 0, 2 ** 31 - 1, true));
  const epochs = top.epochs === undefined ? TRAIN_DEFAULTS.epochs : numberAt(top.epochs, 'epochs', 1, 100000, true);
  const trainGiven = top.train === undefined ? {} : mapping(top.train, 'train');
  checkKeys(trainGiven, TRAIN_KEYS, 'train', 'train');
  const train: TrainSettings = {
    'batch-size':
      trainGiven['batch-size'] === undefined
        ? TRAIN_DEFAULTS.batchSize
        : numberAt(trainGiven['batch-size'], 'train.batch-size', 1, 1 << 20, true),
    optimizer: (trainGiven.optimizer ?? TRAIN_DEFAULTS.optimizer) as TrainSettings['optimizer'],
    lr: trainGiven.lr === undefined ? TRAIN_DEFAULTS.lr : numberAt(trainGiven.lr, 'train.lr', 0, 100),
    momentum:
      trainGiven.momentum === undefined
        ? TRAIN_DEFAULTS.momentum
        : numberAt(trainGiven.momentum, 'train.momentum', 0, 1),
    'weight-decay':
      trainGiven['weight-decay'] === undefined
        ? TRAIN_DEFAULTS.weightDecay
        : numberAt(trainGiven['weight-decay'], 'train.weight-decay', 0, 1),
    schedule: (trainGiven.schedule ?? TRAIN_DEFAULTS.schedule) as TrainSettings['schedule'],
    augment: trainGiven.augment === undefined ? TRAIN_DEFAULTS.augment : booleanAt(trainGiven.augment, 'train.augment'),
  };
  if (!['sgd', 'adam'].includes(train.optimizer)) fail('train.optimizer', 'expected sgd or adam');
  if (!['cosine', 'step', 'multistep', 'onecycle', 'constant'].includes(train.schedule)) {
    fail('train.schedule', 'expected cosine, step, multistep, onecycle or constant');
  }
  const cleanRatio = top['clean-ratio'] === undefined ? 0.05 : numberAt(top['clean-ratio'], 'clean-ratio', 0, 1);
  const evidence = top.evidence === undefined ? DEFAULT_EVIDENCE_FRACTION : numberAt(top.evidence, 'evidence', 0, 0.5);
  const detect = top.detect === undefined ? true : booleanAt(top.detect, 'detect');
  const monitor = top.monitor === undefined ? 0 : numberAt(top.monitor, 'monitor', 0, 1e9, true);
  const verify = top.verify === undefined ? false : booleanAt(top.verify, 'verify');

  // Attacks: the attack flags of `mcldef train`, plus a label, per-attack epochs and, for a
  // clean model (`name: none`), the trigger its ASR is measured with.
  if (!Array.isArray(top.attacks) || top.attacks.length === 0) fail('attacks', 'expected a non-empty list');
  interface AttackEntryRead {
    label: string;
    epochs: number;
    attack: AttackConfig | null;
    measure: AttackConfig | null;
    trojanFrom?: string;
    weights: FileRef | null;
  }
  const attackEntries: AttackEntryRead[] = (top.attacks as unknown[]).map((raw, i) => {
    const at = `attacks.${i}`;
    const entry = mapping(raw, at);
    checkKeys(entry, ATTACK_KEYS, at, 'an attack');
    const name = stringAt(entry.name, `${at}.name`);
    if (name !== 'none' && !attackNames().includes(name)) {
      fail(`${at}.name`, `unknown attack '${name}' (known: none, ${attackNames().join(', ')})`);
    }
    const settings = (attackName: string): AttackConfig => {
      const config: AttackConfig = {
        name: attackName,
        target: entry.target === undefined ? 0 : numberAt(entry.target, `${at}.target`, 0, 1e6, true),
        mode: (entry.mode ?? 'all-to-one') as AttackConfig['mode'],
        'poison-rate':
          entry['poison-rate'] === undefined ? 0.1 : numberAt(entry['poison-rate'], `${at}.poison-rate`, 0, 1),
      };
      if (!['all-to-one', 'all-to-all'].includes(config.mode)) fail(`${at}.mode`, 'expected all-to-one or all-to-all');
      if (entry['attack-seed'] !== undefined)
        config['attack-seed'] = numberAt(entry['attack-seed'], `${at}.attack-seed`, 0, 2 ** 31 - 1, true);
      if (entry.alpha !== undefined) config.alpha = numberAt(entry.alpha, `${at}.alpha`, 0, 1e6);
      for (const key of FILE_KEYS) {
        if (entry[key] === undefined) continue;
        if (key === 'trojan-model' && typeof entry[key] === 'string' && entry[key].startsWith('@')) continue;
        config[key] = fileAt(entry[key], `${at}.${key}`);
      }
      return config;
    };
    let attack: AttackConfig | null = null;
    let measure: AttackConfig | null = null;
    if (name === 'none') {
      if (entry['measure-with'] !== undefined) {
        const measured = stringAt(entry['measure-with'], `${at}.measure-with`);
        if (!attackNames().includes(measured)) fail(`${at}.measure-with`, `unknown attack '${measured}'`);
        measure = settings(measured);
      }
    } else {
      if (entry['measure-with'] !== undefined) fail(`${at}.measure-with`, "only a clean model ('name: none') takes it");
      attack = settings(name);
      measure = attack;
    }
    const read: AttackEntryRead = {
      label: entry.label === undefined ? (name === 'none' ? 'clean' : name) : stringAt(entry.label, `${at}.label`),
      epochs: entry.epochs === undefined ? epochs : numberAt(entry.epochs, `${at}.epochs`, 1, 100000, true),
      attack,
      measure,
      weights: entry.weights === undefined ? null : fileAt(entry.weights, `${at}.weights`),
    };
    const trojanModel = entry['trojan-model'];
    if (typeof trojanModel === 'string' && trojanModel.startsWith('@')) read.trojanFrom = trojanModel.slice(1);
    return read;
  });
  const attackLabels = attackEntries.map((entry) => entry.label);
  attackLabels.forEach((name, i) => {
    if (attackLabels.indexOf(name) !== i) fail(`attacks.${i}`, `label '${name}' is used twice (give one a 'label')`);
  });
  attackEntries.forEach((entry, i) => {
    if (entry.trojanFrom === undefined) return;
    const from = attackEntries.find((other) => other.label === entry.trojanFrom);
    if (from === undefined) fail(`attacks.${i}.trojan-model`, `no attack labelled '${entry.trojanFrom}' in this grid`);
    if (from!.trojanFrom !== undefined) fail(`attacks.${i}.trojan-model`, `'${entry.trojanFrom}' needs a model itself`);
  });

  // Defenses: a registered name, its options as in `mcldef defend --method NAME`, defaults filled in.
  if (!Array.isArray(top.defenses) || top.defenses.length === 0) fail('defenses', 'expected a non-empty list');
  const defenses = (top.defenses as unknown[]).map((raw, i) => {
    const at = `defenses.${i}`;
    const entry = mapping(raw, at);
    const name = stringAt(entry.name, `${at}.name`);
    if (!defenseNames().includes(name))
      fail(`${at}.name`, `unknown defense '${name}' (known: ${defenseNames().join(', ')})`);
    const specs = defenseEntry(name).options;
    const options: Record<string, OptionValue> = {};
    // The grid's clean-data and target settings, for this defense's cells only.
    const settings = {
      cleanRatio:
        entry['clean-ratio'] === undefined ? cleanRatio : numberAt(entry['clean-ratio'], `${at}.clean-ratio`, 0, 1),
      evidence: entry.evidence === undefined ? evidence : numberAt(entry.evidence, `${at}.evidence`, 0, 0.5),
      detect: entry.detect === undefined ? detect : booleanAt(entry.detect, `${at}.detect`),
      monitor: entry.monitor === undefined ? monitor : numberAt(entry.monitor, `${at}.monitor`, 0, 1e9, true),
      verify: entry.verify === undefined ? verify : booleanAt(entry.verify, `${at}.verify`),
    };
    for (const [key, value] of Object.entries(entry)) {
      if (['name', 'label', ...CELL_KEYS].includes(key)) continue;
      const spec: OptionSpec | undefined = specs[camelCase(key)];
      if (spec === undefined) {
        fail(`${at}.${key}`, `defense '${name}' has no option '${key}' (see mcldef defend --method ${name} --help)`);
      }
      try {
        options[camelCase(key)] = parseOptionValue(spec!, value, key);
      } catch (error) {
        fail(`${at}.${key}`, (error as Error).message);
      }
    }
    for (const [option, spec] of Object.entries(specs)) {
      if (options[option] === undefined && spec.default !== undefined) options[option] = spec.default;
    }
    const label = entry.label === undefined ? name : stringAt(entry.label, `${at}.label`);
    return { defense: { label, name, options }, ...settings };
  });
  const defenseLabels = defenses.map((entry) => entry.defense.label);
  defenseLabels.forEach((name, i) => {
    if (defenseLabels.indexOf(name) !== i) fail(`defenses.${i}`, `label '${name}' is used twice (give one a 'label')`);
  });

  // Expansion: models per seed × attack (dependencies first), then cells per model × defense.
  const models: ModelSpec[] = [];
  const cells: CellSpec[] = [];
  for (const seed of seeds) {
    const bySeed = new Map<string, ModelSpec>();
    const modelOf = (entry: AttackEntryRead): ModelSpec => {
      const known = bySeed.get(entry.label);
      if (known !== undefined) return known;
      let attack = entry.attack;
      if (attack !== null && entry.trojanFrom !== undefined) {
        const from = modelOf(attackEntries.find((other) => other.label === entry.trojanFrom)!);
        attack = { ...attack, 'trojan-model': { model: from.id } };
      }
      const body = { data, arch, seed, epochs: entry.epochs, train, attack, weights: entry.weights };
      const model: ModelSpec = { id: hashOf(modelIdentity(body, dataAsWritten)), label: entry.label, ...body };
      bySeed.set(entry.label, model);
      if (!models.some((other) => other.id === model.id)) models.push(model);
      return model;
    };
    for (const entry of attackEntries) {
      const model = modelOf(entry);
      const needs = entry.trojanFrom === undefined ? [] : [bySeed.get(entry.trojanFrom)!];
      const measure = entry.measure === null ? null : { attack: entry.attack === null ? entry.measure : model.attack! };
      for (const { defense, cleanRatio, evidence, detect, monitor, verify } of defenses) {
        const identity = {
          model: model.id,
          measure: measure === null ? null : modelIdentity({ ...model, attack: measure.attack }, dataAsWritten),
          defense: { name: defense.name, options: defense.options },
          'clean-ratio': cleanRatio,
          evidence,
          detect,
          monitor,
          // Only when set, so that the ids of grids without it stay what they were.
          ...(verify ? { verify } : {}),
          seed,
        };
        cells.push({
          id: hashOf(identity),
          model,
          needs,
          measure,
          defense,
          'clean-ratio': cleanRatio,
          evidence,
          detect,
          monitor,
          verify,
          seed,
        });
      }
    }
  }
  const name =
    top.name === undefined
      ? file === null
        ? 'grid'
        : file.replace(/^.*\//, '').replace(/\.[^.]*$/, '')
      : stringAt(top.name, 'name');
  return { file, name, models, cells };
}

/** A part of a grid to run now: models by label, defenses by label, seeds; unset axes are whole. */
export interface CellSelection {
  models?: readonly string[];
  defenses?: readonly string[];
  seeds?: readonly number[];
}

/**
 * The grid cut down to the selected cells and the models they need. Ids stay those of the
 * whole grid, so a part run now and the rest run later fill one store. A label the grid does
 * not have is an error that lists the ones it has.
 */
export function selectCells(grid: Grid, selection: CellSelection = {}): Grid {
  const check = (axis: string, wanted: readonly (string | number)[] | undefined, known: (string | number)[]): void => {
    const unknown = wanted?.find((value) => !known.includes(value));
    if (unknown !== undefined) {
      throw new GridError(
        `${grid.name}: no ${axis} '${unknown}' in the grid (it has: ${[...new Set(known)].join(', ')})`,
      );
    }
  };
  check(
    'model',
    selection.models,
    grid.models.map((model) => model.label),
  );
  check(
    'defense',
    selection.defenses,
    grid.cells.map((cell) => cell.defense.label),
  );
  check(
    'seed',
    selection.seeds,
    grid.cells.map((cell) => cell.seed),
  );
  const cells = grid.cells.filter(
    (cell) =>
      (selection.models?.includes(cell.model.label) ?? true) &&
      (selection.defenses?.includes(cell.defense.label) ?? true) &&
      (selection.seeds?.includes(cell.seed) ?? true),
  );
  const needed = new Set(cells.flatMap((cell) => [cell.model.id, ...cell.needs.map((model) => model.id)]));
  return { ...grid, cells, models: grid.models.filter((model) => needed.has(model.id)) };
}
