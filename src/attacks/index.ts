// Attacks by name (SPEC §4): badnets-grid, badnets-square, blended, sig, trojan, wanet, patch.
import { Attack, type AttackConfig, type AttackMode, type ImageGeometry } from './attack.js';
import { BadNetsGrid, BadNetsSquare } from './badnets.js';
import { Blended, type BlendedOptions } from './blended.js';
import { Patch } from './patch.js';
import { Sig, type SigOptions } from './sig.js';
import { Trojan, type TrojanGeneration, type TrojanOptions } from './trojan.js';
import { Wanet, type WanetOptions } from './wanet.js';

export { Attack, type AttackConfig, type AttackMode, type ImageGeometry } from './attack.js';
export { BadNetsGrid, BadNetsSquare } from './badnets.js';
export { Blended } from './blended.js';
export { Patch } from './patch.js';
export { Sig } from './sig.js';
export { Trojan } from './trojan.js';
export { Wanet } from './wanet.js';
export { stamp } from './patterns.js';

export const ATTACK_NAMES = ['badnets-grid', 'badnets-square', 'blended', 'sig', 'trojan', 'wanet', 'patch'] as const;
export type AttackName = (typeof ATTACK_NAMES)[number];

/** Attack-specific options, all optional except where an attack needs a file. */
export interface AttackOptions extends BlendedOptions, SigOptions, WanetOptions, TrojanOptions {
  triggerFile?: string;
  maskFile?: string;
  /** trojan without a watermark file: generate one against this clean model. */
  trojanSource?: TrojanGeneration;
}

export interface CreateAttackArgs {
  name: string;
  target?: number;
  mode?: AttackMode;
  poisonRate?: number;
  seed?: number;
  numClasses: number;
  geometry: ImageGeometry;
  options?: AttackOptions;
}

/** Builds an attack by name, checking the target against the class count. */
export function createAttack(args: CreateAttackArgs): Attack {
  const { name, numClasses, geometry } = args;
  if (!(ATTACK_NAMES as readonly string[]).includes(name)) {
    throw new Error(`unknown attack '${name}'; known attacks: ${ATTACK_NAMES.join(', ')}`);
  }
  const target = args.target ?? 0;
  if (!Number.isInteger(target) || target < 0 || target >= numClasses) {
    throw new RangeError(`target class ${target} is out of range for ${numClasses} classes (0..${numClasses - 1})`);
  }
  const config: AttackConfig = {
    target,
    mode: args.mode ?? 'all-to-one',
    poisonRate: args.poisonRate ?? 0.1,
    seed: args.seed ?? 0,
  };
  const options = args.options ?? {};
  switch (name as AttackName) {
    case 'badnets-grid':
      return new BadNetsGrid(config, geometry);
    case 'badnets-square':
      return new BadNetsSquare(config, geometry);
    case 'blended':
      return new Blended(config, geometry, options);
    case 'sig':
      return new Sig(config, geometry, options);
    case 'wanet':
      return new Wanet(config, geometry, options);
    case 'patch':
      if (options.triggerFile === undefined || options.maskFile === undefined) {
        throw new Error('patch: give --trigger FILE and --mask FILE');
      }
      return new Patch(config, geometry, { triggerFile: options.triggerFile, maskFile: options.maskFile });
    case 'trojan':
      if (options.watermarkFile === undefined && options.trojanSource !== undefined) {
        return Trojan.generate(config, geometry, options, options.trojanSource);
      }
      return new Trojan(config, geometry, options);
  }
}
