// Typed option specifications: what a defense (or any registered method) accepts, with
// defaults and help text. The CLI builds its flags from them and config files are checked
// against them, so a method declares its options once.

/** A value an option can hold once parsed. */
export type OptionValue = number | string | boolean;

interface SpecBase {
  /** One line for --help and `mcldef list`. */
  readonly help: string;
  /** Which part of a method the option belongs to (e.g. 'scan': shared by `mcldef detect`). */
  readonly group?: string;
}

export type OptionSpec = SpecBase &
  (
    | {
        readonly type: 'number';
        readonly default?: number;
        readonly min?: number;
        readonly max?: number;
        /** Also accept the word 'off' (kept as the string 'off'). */
        readonly offWord?: boolean;
      }
    | { readonly type: 'integer'; readonly default?: number; readonly min?: number; readonly max?: number }
    | { readonly type: 'choice'; readonly choices: readonly string[]; readonly default?: string }
    | { readonly type: 'string'; readonly default?: string }
    | { readonly type: 'boolean'; readonly default?: boolean }
  );

/** Options by camelCase name; the flag is the kebab-case name (`cleanWeight` → `--clean-weight`). */
export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

/** Parsed option values by camelCase name; absent: unset (the method's own default applies). */
export type OptionValues = Readonly<Record<string, OptionValue | undefined>>;

/** `cleanWeight` → `clean-weight`. */
export function kebabCase(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/** `clean-weight` → `cleanWeight`. */
export function camelCase(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
}

/** Thrown for a value an option does not accept; the message names the option and the rule. */
export class OptionError extends Error {
  override name = 'OptionError';
}

/** The range a numeric spec accepts, for messages. */
function rangeText(spec: { min?: number; max?: number }): string {
  if (spec.min !== undefined && spec.max !== undefined) return ` in [${spec.min}, ${spec.max}]`;
  if (spec.min !== undefined) return ` ≥ ${spec.min}`;
  if (spec.max !== undefined) return ` ≤ ${spec.max}`;
  return '';
}

/**
 * Parses one option's value, given as text (a flag) or as a JSON/YAML value (a config file),
 * and checks it against the spec. `label` names the option in the error (e.g. `--epochs`).
 */
export function parseOptionValue(spec: OptionSpec, raw: unknown, label: string): OptionValue {
  switch (spec.type) {
    case 'boolean': {
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true') return true;
      if (raw === 'false') return false;
      throw new OptionError(`${label} must be true or false, got ${JSON.stringify(raw)}`);
    }
    case 'choice': {
      const text = typeof raw === 'number' ? String(raw) : raw;
      if (typeof text === 'string' && spec.choices.includes(text)) return text;
      throw new OptionError(`${label} must be one of ${spec.choices.join(', ')}, got ${JSON.stringify(raw)}`);
    }
    case 'string': {
      if (typeof raw === 'string' && raw !== '') return raw;
      if (typeof raw === 'number') return String(raw);
      throw new OptionError(`${label} must be a non-empty string, got ${JSON.stringify(raw)}`);
    }
    case 'number':
    case 'integer': {
      if (spec.type === 'number' && spec.offWord === true && raw === 'off') return 'off';
      const value = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      const integer = spec.type === 'integer';
      if (
        !Number.isFinite(value) ||
        (integer && !Number.isInteger(value)) ||
        (spec.min !== undefined && value < spec.min) ||
        (spec.max !== undefined && value > spec.max)
      ) {
        const kind = integer ? 'an integer' : 'a number';
        const off = spec.type === 'number' && spec.offWord === true ? " or 'off'" : '';
        throw new OptionError(`${label} must be ${kind}${rangeText(spec)}${off}, got ${JSON.stringify(raw)}`);
      }
      return value;
    }
  }
}

/**
 * The values with every unknown name refused and every given value checked; specs with a
 * default fill in what is absent.
 */
export function resolveOptions(
  specs: OptionSpecs,
  given: Readonly<Record<string, unknown>>,
  owner: string,
): Record<string, OptionValue | undefined> {
  const resolved: Record<string, OptionValue | undefined> = {};
  for (const name of Object.keys(given)) {
    if (!(name in specs)) {
      throw new OptionError(`${owner} has no option '${name}' (options: ${Object.keys(specs).join(', ')})`);
    }
  }
  for (const [name, spec] of Object.entries(specs)) {
    const raw = given[name];
    resolved[name] = raw === undefined ? spec.default : parseOptionValue(spec, raw, `${owner} option ${name}`);
  }
  return resolved;
}

/** The values with the specs' defaults filled in; names with neither a value nor a default are left out. */
export function withDefaults(specs: OptionSpecs, values: OptionValues): Record<string, OptionValue> {
  const filled: Record<string, OptionValue> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const value = values[name] ?? spec.default;
    if (value !== undefined) filled[name] = value;
  }
  return filled;
}
