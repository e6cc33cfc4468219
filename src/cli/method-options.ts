// Command-line flags built from a method's option specs (src/defenses/options.ts), so that a
// registered defense brings its own flags: `cleanWeight` becomes `--clean-weight <value>`, a
// boolean that defaults to true becomes `--no-<name>`.
import { type Command, InvalidArgumentError, Option } from 'commander';

import {
  type OptionSpec,
  type OptionSpecs,
  type OptionValue,
  kebabCase,
  parseOptionValue,
} from '../defenses/options.js';

function optionFor(name: string, spec: OptionSpec): Option {
  const flag = kebabCase(name);
  if (spec.type === 'boolean') {
    return spec.default === true ? new Option(`--no-${flag}`, spec.help) : new Option(`--${flag}`, spec.help);
  }
  const placeholder = spec.type === 'choice' ? 'name' : spec.type === 'string' ? 'value' : 'n';
  const option = new Option(`--${flag} <${placeholder}>`, spec.help);
  if (spec.type === 'choice') option.choices(spec.choices);
  else
    option.argParser((text: string): OptionValue => {
      try {
        return parseOptionValue(spec, text, `--${flag}`);
      } catch (error) {
        throw new InvalidArgumentError((error as Error).message.replace(`--${flag} `, ''));
      }
    });
  if (spec.default !== undefined) option.default(spec.default);
  return option;
}

/**
 * Adds a flag for each spec (those of `group` only, when given). A spec whose flag the
 * command already has is an error: a method may not redefine a shared flag.
 */
export function addSpecOptions(command: Command, specs: OptionSpecs, owner: string, group?: string): Command {
  for (const [name, spec] of Object.entries(specs)) {
    if (group !== undefined && spec.group !== group) continue;
    const option = optionFor(name, spec);
    if (command.options.some((existing) => existing.attributeName() === option.attributeName())) {
      throw new Error(`${owner}: option '${name}' clashes with the command's own --${kebabCase(name)}`);
    }
    command.addOption(option);
  }
  return command;
}

/** The spec options' values from the parsed flags, by camelCase name (unset ones left out). */
export function specValues(specs: OptionSpecs, flags: Readonly<Record<string, unknown>>): Record<string, OptionValue> {
  const values: Record<string, OptionValue> = {};
  for (const name of Object.keys(specs)) {
    const value = flags[name];
    if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') values[name] = value;
  }
  return values;
}
