// Poisoning policies: which training samples an attack may poison, the label a poisoned
// sample gets, and the label a triggered test image should reach. One switch here instead
// of a clean-label flag and a mode read separately by every caller.
export type PoisonPolicy = 'all-to-one' | 'all-to-all' | 'clean-label';

/** How evaluation counts ASR: one target for every image, or y → (y + 1) mod K. */
export type AttackMode = 'all-to-one' | 'all-to-all';

export const POISON_POLICIES: readonly PoisonPolicy[] = ['all-to-one', 'all-to-all', 'clean-label'];

/** Clean-label poisoning keeps labels but still aims every triggered image at one target. */
export function modeOf(policy: PoisonPolicy): AttackMode {
  return policy === 'all-to-all' ? 'all-to-all' : 'all-to-one';
}

/** The label the attacker wants for a triggered image of true label `label`. */
export function attackTarget(policy: PoisonPolicy, label: number, target: number, numClasses: number): number {
  return policy === 'all-to-all' ? (label + 1) % numClasses : target;
}

/**
 * Whether a training sample of this label may be poisoned: all-to-one skips the target
 * class (relabelling it would change nothing), clean-label takes only the target class
 * (its labels stay), all-to-all takes any.
 */
export function poisonable(policy: PoisonPolicy, label: number, target: number): boolean {
  switch (policy) {
    case 'all-to-one':
      return label !== target;
    case 'all-to-all':
      return true;
    case 'clean-label':
      return label === target;
  }
}

/** The label a poisoned training sample gets (clean-label: its own). */
export function poisonLabel(policy: PoisonPolicy, label: number, target: number, numClasses: number): number {
  return policy === 'clean-label' ? label : attackTarget(policy, label, target, numClasses);
}
