// Defenses by name. A new defense is one file exporting a DefenseEntry plus one
// `registerDefense` line in src/defenses/index.ts (CONTRIBUTING.md).
import type { DefenseEntry } from './defense.js';

const entries = new Map<string, DefenseEntry>();

/** Registers a defense; a second entry under the same name is an error. */
export function registerDefense(entry: DefenseEntry): void {
  if (!/^[a-z][a-z0-9-]*$/.test(entry.name)) {
    throw new Error(`defense name '${entry.name}': use lower-case letters, digits and '-'`);
  }
  if (entries.has(entry.name)) throw new Error(`a defense named '${entry.name}' is already registered`);
  entries.set(entry.name, entry);
}

/** Removes a registered defense (tests register their own). */
export function unregisterDefense(name: string): void {
  entries.delete(name);
}

/** Every registered defense, in registration order. */
export function defenseEntries(): DefenseEntry[] {
  return [...entries.values()];
}

export function defenseNames(): string[] {
  return [...entries.keys()];
}

/** The entry for `name`; an unknown name is an error that lists the known ones. */
export function defenseEntry(name: string): DefenseEntry {
  const entry = entries.get(name);
  if (entry === undefined) {
    throw new Error(`unknown defense '${name}'; known defenses: ${defenseNames().join(', ')}`);
  }
  return entry;
}
