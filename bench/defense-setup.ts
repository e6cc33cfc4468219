// What the defense benches share: the test split, the seeded 5 % clean subset of the training
// split, the named attack's test-time trigger, and a loader of fresh copies of the model.
import * as setup from '../src/pipeline/setup.js';
import { type AttackFlags, type CommonFlags, applyCommon, buildAttack, loadSplit } from '../src/cli/common.js';
import type { ImageSplit } from '../src/data/dataset.js';
import { subset } from '../src/data/subset.js';
import type { Attack } from '../src/attacks/index.js';
import type { Classifier } from '../src/nn/models/classifier.js';

export interface DefenseSetup {
  test: ImageSplit;
  clean: ImageSplit;
  attack: Attack;
  load: () => Classifier;
}

export function defenseSetup(
  flags: AttackFlags & CommonFlags,
  data: string,
  arch: string,
  weights: string | undefined,
): DefenseSetup {
  applyCommon(flags);
  const train = loadSplit(data, 'train', flags);
  const test = loadSplit(data, 'test', flags);
  const clean = subset(train, 0.05, { seed: flags.seed });
  train.dispose();
  const attack = buildAttack(flags, test, arch, test);
  if (attack === undefined) throw new Error('name an attack (--attack)');
  return { test, clean, attack, load: () => setup.buildModel(arch, clean, weights).model };
}
