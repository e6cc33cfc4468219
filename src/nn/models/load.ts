// A zoo model for a user's weights file: the architecture given, else the one recorded in
// the file, else the one whose state-dict keys and shapes the file has; weights that do
// not fit are refused with one short line that names the model they do fit.
import { type CheckpointSource, readWeights } from '../../io/index.js';
import { dispose } from '../../engine/scope.js';
import type { Classifier } from './classifier.js';
import { createModel, type ModelOptions, modelNames } from './index.js';

export interface LoadClassifierOptions extends ModelOptions {
  /** A PyTorch (.pth/.pt, zip or legacy) or safetensors file, or its bytes. */
  weights: CheckpointSource;
  /** A zoo name; when absent, the file's recorded `arch`, else the zoo model its keys fit. */
  arch?: string;
  /**
   * Called once the architecture is chosen, before the model is built. Telling it from the
   * keys builds zoo models, which draws from libtorch's generator; a caller that wants the
   * same draws either way seeds the generator here.
   */
  beforeCreate?: (arch: string) => void;
}

/** Where the architecture came from: the caller, the file's metadata, or its keys. */
export type ArchSource = 'given' | 'recorded' | 'keys';

export interface LoadedClassifier {
  /** The model with the file's weights, in train mode as constructed: call eval() to evaluate. */
  model: Classifier;
  arch: string;
  archSource: ArchSource;
  /** The file's other entries (saveWeights records `arch` and more there). */
  metadata: Record<string, unknown>;
  /** Conversions the reader made (e.g. bfloat16 widened). */
  notes: string[];
}

/** Anything with a shape: tensors, or shapes read elsewhere. */
type Shaped = ReadonlyMap<string, { readonly shape: readonly number[] }>;

interface Mismatch {
  missing: string[];
  unexpected: string[];
  shapes: { key: string; file: readonly number[]; model: readonly number[] }[];
}

/** Keys named in a message per kind: the line stays short (the file's path leads it). */
const KEYS_SHOWN = 2;

/**
 * Checkpoints from PyTorch before 0.4.1 have no batch-norm counters; PyTorch loads them
 * anyway, and the counter only matters to momentum=None training.
 */
const optional = (key: string): boolean => key.endsWith('.num_batches_tracked');

function compare(model: Shaped, file: Shaped): Mismatch {
  const missing = [...model.keys()].filter((key) => !file.has(key) && !optional(key));
  const unexpected = [...file.keys()].filter((key) => !model.has(key));
  const shapes: Mismatch['shapes'] = [];
  for (const [key, { shape }] of model) {
    const other = file.get(key)?.shape;
    if (other !== undefined && (other.length !== shape.length || other.some((size, i) => size !== shape[i]))) {
      shapes.push({ key, file: other, model: shape });
    }
  }
  return { missing, unexpected, shapes };
}

const fits = (mismatch: Mismatch): boolean =>
  mismatch.missing.length + mismatch.unexpected.length + mismatch.shapes.length === 0;

/** Same key names, other shapes (another class count or input channels, most likely). */
const sameKeys = (mismatch: Mismatch): boolean => mismatch.missing.length + mismatch.unexpected.length === 0;

type Signature = Map<string, { shape: readonly number[] }>;

/** Parameter and persistent-buffer shapes of a model, without copying any tensor. */
function signatureOf(model: Classifier): Signature {
  const entries = [...model.namedParameters(), ...model.namedBuffers({ persistentOnly: true })];
  return new Map(entries.map(([key, tensor]) => [key, { shape: tensor.shape }]));
}

// Per (arch, classes, channels): reading a zoo model's shapes costs building and
// initializing it, so each is built once per process.
const signatures = new Map<string, Signature>();

function signature(arch: string, options: ModelOptions): Signature {
  const id = `${arch}/${options.numClasses}/${options.inChannels ?? ''}`;
  let result = signatures.get(id);
  if (result === undefined) {
    const model = createModel(arch, options);
    result = signatureOf(model);
    model.dispose();
    signatures.set(id, result);
  }
  return result;
}

/** The zoo names whose state-dict keys and shapes (with these options) are exactly the file's. */
export function fittingArchs(stateDict: Shaped, options: ModelOptions): string[] {
  return modelNames().filter((arch) => fits(compare(signature(arch, options), stateDict)));
}

/** The zoo names with the file's keys but other shapes somewhere. */
function sameKeyArchs(stateDict: Shaped, options: ModelOptions): string[] {
  return modelNames().filter((arch) => {
    const mismatch = compare(signature(arch, options), stateDict);
    return sameKeys(mismatch) && !fits(mismatch);
  });
}

const dims = (shape: readonly number[]): string => (shape.length === 0 ? 'scalar' : shape.join('×'));

const list = (keys: readonly string[]): string =>
  keys.slice(0, KEYS_SHOWN).join(', ') + (keys.length > KEYS_SHOWN ? ', …' : '');

function describeMismatch(mismatch: Mismatch): string {
  const parts: string[] = [];
  const { missing, unexpected, shapes } = mismatch;
  if (missing.length > 0)
    parts.push(`${missing.length} missing key${missing.length === 1 ? '' : 's'}: ${list(missing)}`);
  if (unexpected.length > 0) parts.push(`${unexpected.length} unexpected: ${list(unexpected)}`);
  if (shapes.length > 0) {
    // The first with both shapes; the rest by name.
    const [{ key, file, model }] = shapes as [Mismatch['shapes'][number]];
    const keys = [`${key} ${dims(file)} (model ${dims(model)})`, ...shapes.slice(1).map((entry) => entry.key)];
    parts.push(`${shapes.length} of ${shapes.length === 1 ? 'another shape' : 'other shapes'}: ${list(keys)}`);
  }
  return parts.join('; ');
}

const SHAPES_HINT = 'another number of classes or input channels?';

/** Where the keys fit instead, or what other shapes suggest; '' when nothing helps. */
function hint(arch: string | undefined, stateDict: Shaped, options: ModelOptions): string {
  const fitting = fittingArchs(stateDict, options);
  if (fitting.length > 0) return `; they fit ${fitting.join(' and ')}: use --arch ${fitting[0]!}`;
  const keysOf = sameKeyArchs(stateDict, options);
  if (arch !== undefined && keysOf.includes(arch)) return `; ${SHAPES_HINT}`;
  return keysOf.length === 0 ? '' : `; they have ${keysOf[0]!}'s keys with other shapes (${SHAPES_HINT})`;
}

function describeOptions({ numClasses, inChannels }: ModelOptions): string {
  return `${numClasses} classes${inChannels === undefined ? '' : ` and ${inChannels} input channel${inChannels === 1 ? '' : 's'}`}`;
}

function sourceName(weights: CheckpointSource): string {
  return typeof weights === 'string' ? weights : 'the weights';
}

/** The `arch` a file records (saveWeights writes it), or undefined. Reads the whole file. */
export function recordedArch(weights: CheckpointSource): string | undefined {
  const checkpoint = readWeights(weights);
  dispose(checkpoint.stateDict);
  return archOf(checkpoint.metadata);
}

function archOf(metadata: Record<string, unknown>): string | undefined {
  const arch = metadata['arch'];
  return typeof arch === 'string' && arch !== '' ? arch : undefined;
}

/**
 * A zoo model with the weights of `options.weights` loaded, its architecture chosen as
 * documented on `arch`. Throws one line when the weights do not fit that architecture
 * (the counts and first keys of each kind, and the zoo model they fit, if any) or when
 * no architecture can be told.
 */
export function loadClassifier(options: LoadClassifierOptions): LoadedClassifier {
  const { weights } = options;
  const modelOptions: ModelOptions = { numClasses: options.numClasses, inChannels: options.inChannels };
  const name = sourceName(weights);
  const checkpoint = readWeights(weights);
  try {
    const { stateDict } = checkpoint;
    const recorded = archOf(checkpoint.metadata);
    let arch: string;
    let archSource: ArchSource;
    if (options.arch !== undefined) {
      [arch, archSource] = [options.arch, 'given'];
    } else if (recorded !== undefined && modelNames().includes(recorded)) {
      [arch, archSource] = [recorded, 'recorded'];
    } else {
      const fitting = fittingArchs(stateDict, modelOptions);
      if (fitting.length !== 1) {
        const why = recorded === undefined ? 'it records no arch' : `its recorded arch '${recorded}' is not in the zoo`;
        const found =
          fitting.length === 0
            ? `its ${stateDict.size} key${stateDict.size === 1 ? '' : 's'} fit no zoo model for ${describeOptions(modelOptions)}${hint(undefined, stateDict, modelOptions)}`
            : `its keys fit ${fitting.join(', ')}`;
        throw new Error(
          `cannot tell the architecture of ${name}: ${why} and ${found}; give --arch (${modelNames().join(', ')})`,
        );
      }
      [arch, archSource] = [fitting[0]!, 'keys'];
    }
    options.beforeCreate?.(arch);
    const model = createModel(arch, modelOptions);
    try {
      const mismatch = compare(signatureOf(model), stateDict);
      if (!fits(mismatch)) {
        const recordedNote = archSource === 'recorded' ? ', the arch recorded in it' : '';
        throw new Error(
          `${name} does not fit ${arch}${recordedNote} (${describeMismatch(mismatch)})${hint(arch, stateDict, modelOptions)}`,
        );
      }
      // Only optional counters can be missing here; shapes are checked again on the copy.
      model.loadStateDict(stateDict, { strict: false });
    } catch (error) {
      model.dispose();
      throw error;
    }
    return { model, arch, archSource, metadata: checkpoint.metadata, notes: checkpoint.notes };
  } finally {
    dispose(checkpoint.stateDict);
  }
}
