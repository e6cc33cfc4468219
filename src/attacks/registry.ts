// The attack registry: name → entry. Each attack file exports its entry and index.ts
// registers the built-in ones; code elsewhere (a test, a plugin) may register more.
// createAttack (index.ts) builds any registered attack by name.
import type { Attack, AttackConfig, ImageGeometry } from './attack.js';
import type { BlendedOptions } from './blended.js';
import { POISON_POLICIES, type PoisonPolicy } from './policy.js';
import type { SigOptions } from './sig.js';
import type { TrojanGeneration, TrojanOptions } from './trojan.js';
import type { WanetOptions } from './wanet.js';

/**
 * Attack-specific options, all optional except where an attack needs a file. An attack
 * defined elsewhere adds its own by augmenting this interface:
 * `declare module '.../attacks/registry.js' { interface AttackOptions { myOption?: number } }`.
 */
export interface AttackOptions extends BlendedOptions, SigOptions, WanetOptions, TrojanOptions {
  triggerFile?: string;
  maskFile?: string;
  /** trojan without a watermark file: generate one against this clean model. */
  trojanSource?: TrojanGeneration;
}

/** What createAttack hands an entry, checked: target in range, policy one of the entry's. */
export interface AttackFactoryArgs {
  /** `mode` already matches `policy`. */
  config: AttackConfig;
  policy: PoisonPolicy;
  numClasses: number;
  geometry: ImageGeometry;
  options: AttackOptions;
}

export interface AttackEntry {
  /** The name the CLI and createAttack take: lower case, digits and dashes. */
  readonly name: string;
  /** One line for help texts. */
  readonly summary: string;
  /** The poisoning policies the attack supports; the first is the default. */
  readonly policies: readonly PoisonPolicy[];
  create(args: AttackFactoryArgs): Attack;
}

const entries = new Map<string, AttackEntry>();

/** Adds an attack; a name may be registered once. */
export function registerAttack(entry: AttackEntry): void {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(entry.name)) {
    throw new Error(`attack name '${entry.name}' must be lower-case letters, digits and dashes`);
  }
  if (entries.has(entry.name)) throw new Error(`attack '${entry.name}' is already registered`);
  if (entry.policies.length === 0 || !entry.policies.every((policy) => POISON_POLICIES.includes(policy))) {
    throw new Error(
      `attack '${entry.name}': policies must be some of ${POISON_POLICIES.join(', ')}, got [${entry.policies.join(', ')}]`,
    );
  }
  if (entry.summary.trim() === '' || entry.summary.includes('\n')) {
    throw new Error(`attack '${entry.name}': the summary is one non-empty line`);
  }
  entries.set(entry.name, entry);
}

/** Registered attacks in registration order. */
export function attackEntries(): readonly AttackEntry[] {
  return [...entries.values()];
}

export function attackEntry(name: string): AttackEntry | undefined {
  return entries.get(name);
}

/** Names of the registered attacks in registration order (built-ins first). */
export function attackNames(): string[] {
  return [...entries.keys()];
}
