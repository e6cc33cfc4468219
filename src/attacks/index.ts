// Attacks by name (SPEC §4). The built-in ones are registered here, one line each; a new
// attack is its own file exporting an AttackEntry plus one registerAttack line.
import type { Attack, AttackConfig, AttackMode, ImageGeometry } from './attack.js';
import { badnetsGridEntry, badnetsSquareEntry } from './badnets.js';
import { blendedEntry } from './blended.js';
import { patchEntry } from './patch.js';
import { type PoisonPolicy, modeOf } from './policy.js';
import { type AttackOptions, attackEntry, attackNames, registerAttack } from './registry.js';
import { sigEntry } from './sig.js';
import { trojanEntry } from './trojan.js';
import { wanetEntry } from './wanet.js';

export { Attack, type AttackConfig, type AttackMode, type ImageGeometry } from './attack.js';
export { BadNetsGrid, BadNetsSquare, badnetsGridEntry, badnetsSquareEntry } from './badnets.js';
export { Blended, blendedEntry } from './blended.js';
export { Patch, patchEntry } from './patch.js';
export { Sig, sigEntry } from './sig.js';
export { Trojan, trojanEntry } from './trojan.js';
export { Wanet, wanetEntry } from './wanet.js';
export { stamp } from './patterns.js';
export type { Trigger } from './trigger.js';
export { POISON_POLICIES, type PoisonPolicy } from './policy.js';
export type { AttackTrainingContext, AttackTrainingHook, AttackTrainingStart } from './training-hook.js';
export {
  type AttackEntry,
  type AttackFactoryArgs,
  type AttackOptions,
  attackEntries,
  attackEntry,
  attackNames,
  registerAttack,
} from './registry.js';

registerAttack(badnetsGridEntry);
registerAttack(badnetsSquareEntry);
registerAttack(blendedEntry);
registerAttack(sigEntry);
registerAttack(trojanEntry);
registerAttack(wanetEntry);
registerAttack(patchEntry);

/** The built-in attacks; attackNames() also lists any registered since. */
export const ATTACK_NAMES = ['badnets-grid', 'badnets-square', 'blended', 'sig', 'trojan', 'wanet', 'patch'] as const;
export type AttackName = (typeof ATTACK_NAMES)[number];

export interface CreateAttackArgs {
  name: string;
  target?: number;
  /** all-to-all selects the all-to-all policy; otherwise the attack's default policy. */
  mode?: AttackMode;
  /** Overrides `mode`; must be one of the attack's policies. */
  policy?: PoisonPolicy;
  poisonRate?: number;
  seed?: number;
  numClasses: number;
  geometry: ImageGeometry;
  options?: AttackOptions;
}

/** Builds a registered attack by name, checking the target and the policy first. */
export function createAttack(args: CreateAttackArgs): Attack {
  const { name, numClasses, geometry } = args;
  const entry = attackEntry(name);
  if (entry === undefined) {
    throw new Error(`unknown attack '${name}'; known attacks: ${attackNames().join(', ')}`);
  }
  const target = args.target ?? 0;
  if (!Number.isInteger(target) || target < 0 || target >= numClasses) {
    throw new RangeError(`target class ${target} is out of range for ${numClasses} classes (0..${numClasses - 1})`);
  }
  // `mode` predates policies: all-to-one meant "the attack's own kind" (sig: clean-label).
  const policy = args.policy ?? (args.mode === 'all-to-all' ? 'all-to-all' : entry.policies[0]!);
  if (args.policy !== undefined && args.mode !== undefined && modeOf(args.policy) !== args.mode) {
    throw new Error(`${name}: policy ${args.policy} does not go with mode ${args.mode}`);
  }
  if (!entry.policies.includes(policy)) {
    throw new Error(`${name} supports ${entry.policies.join(', ')} poisoning, not ${policy}`);
  }
  const config: AttackConfig = {
    target,
    mode: modeOf(policy),
    poisonRate: args.poisonRate ?? 0.1,
    seed: args.seed ?? 0,
  };
  const attack = entry.create({ config, policy, numClasses, geometry, options: args.options ?? {} });
  if (attack.policy !== policy) {
    attack.dispose();
    throw new Error(`attack '${name}' was asked for ${policy} poisoning but built one with ${attack.policy}`);
  }
  return attack;
}
