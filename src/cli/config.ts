// --config FILE: options from a YAML or JSON file, keys = long flag names. Each value goes
// through the same parser and checks as the flag would; flags given on the command line win.
// A report.json is accepted as it is: its `options` (the run's resolved options) repeat the run.
import { readFileSync } from 'node:fs';

import { type Command, type Option } from 'commander';
import { parse } from 'yaml';

import { UsageError } from './common.js';

/** The options in a config file: a mapping, or a report's `options`. */
export function readConfig(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(
      `config ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`,
    );
  }
  let value: unknown;
  try {
    value = parse(text);
  } catch (error) {
    throw new UsageError(`config ${path}: not valid YAML or JSON (${(error as Error).message.split('\n')[0]})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new UsageError(`config ${path}: expected a mapping of option names to values`);
  }
  const record = value as Record<string, unknown>;
  // A report written by `mcldef defend`: its resolved options.
  if ('before' in record && 'after' in record && typeof record.options === 'object' && record.options !== null) {
    return record.options as Record<string, unknown>;
  }
  return record;
}

/** The value a config entry gives an option, parsed and checked as the flag's text would be. */
function configValue(option: Option, raw: unknown, key: string, path: string): unknown {
  const takesValue = option.required || option.optional;
  if (!takesValue) {
    if (typeof raw !== 'boolean') throw new UsageError(`config ${path}: key '${key}' must be true or false`);
    return option.negate ? !raw : raw;
  }
  if (raw === null || typeof raw === 'object') {
    throw new UsageError(`config ${path}: key '${key}' must be a single value, got ${JSON.stringify(raw)}`);
  }
  const text = String(raw);
  if (option.argChoices !== undefined && !option.argChoices.includes(text)) {
    throw new UsageError(`config ${path}: key '${key}' must be one of ${option.argChoices.join(', ')}, got '${text}'`);
  }
  if (option.parseArg === undefined) return text;
  try {
    return option.parseArg(text, undefined);
  } catch (error) {
    throw new UsageError(`config ${path}: key '${key}': ${(error as Error).message}`);
  }
}

/** Options that a config file may not set (they say where the config itself is). */
const NOT_CONFIGURABLE = new Set(['config']);

/** Sets the command's options from the file where the command line did not give them. */
export function applyConfig(command: Command, path: string): void {
  const entries = readConfig(path);
  for (const [key, raw] of Object.entries(entries)) {
    if (raw === undefined) continue;
    const option = command.options.find(
      (candidate) => candidate.long === `--${key}` || (candidate.negate && candidate.long === `--no-${key}`),
    );
    if (option === undefined || NOT_CONFIGURABLE.has(key)) {
      throw new UsageError(
        `config ${path}: unknown key '${key}' for mcldef ${command.name()} (see mcldef ${command.name()} --help)`,
      );
    }
    const name = option.attributeName();
    if (command.getOptionValueSource(name) === 'cli') continue;
    let value = configValue(option, raw, key, path);
    // `--no-drop-last` written as `drop-last: false`: the option is negated, the key is not.
    if (option.negate && option.long === `--no-${key}`) value = raw;
    command.setOptionValueWithSource(name, value, 'config');
  }
}

/** Options each command needs, checked after the config file is applied (flag names). */
const required = new WeakMap<Command, string[]>();

export function requireOptions(command: Command, flags: string[]): Command {
  required.set(command, flags);
  return command;
}

/** Errors for required options that neither the command line nor the config file gave. */
export function checkRequired(command: Command): void {
  for (const flag of required.get(command) ?? []) {
    const option = command.options.find((candidate) => candidate.long === flag);
    if (option !== undefined && command.getOptionValue(option.attributeName()) === undefined) {
      throw new UsageError(`required option '${option.flags}' not given (on the command line or in --config)`);
    }
  }
}
