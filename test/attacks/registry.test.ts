// The attack registry and the poisoning policies: every built-in attack is an entry, an
// attack registered later is built by name, and each policy picks exactly the samples the
// code before policies picked (digests recorded from commit 86ed920).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { PNG } from 'pngjs';

import { type Tensor, full, tidy } from '../../src/index.js';
import {
  ATTACK_NAMES,
  Attack,
  type AttackFactoryArgs,
  type PoisonPolicy,
  attackEntries,
  attackEntry,
  attackNames,
  createAttack,
  registerAttack,
} from '../../src/attacks/index.js';
import { temporaryFolder } from '../helpers/tmp.js';

const geometry = { channels: 3, height: 12, width: 12 };

function digest(values: Int32Array): string {
  return createHash('sha256')
    .update(Buffer.from(values.buffer, values.byteOffset, values.byteLength))
    .digest('hex')
    .slice(0, 16);
}

/** 997 labels in 0..9 from a fixed LCG (the same inputs the recorded digests came from). */
function lcgLabels(): Int32Array {
  let state = 12345;
  return Int32Array.from({ length: 997 }, () => {
    state = (state * 1103515245 + 12345) >>> 0;
    return Math.floor((state / 2 ** 32) * 10);
  });
}

function whitePng(): string {
  const png = new PNG({ width: 12, height: 12 });
  png.data.fill(255);
  const file = join(temporaryFolder('mcldef-registry-'), 'white.png');
  writeFileSync(file, PNG.sync.write(png));
  return file;
}

test('every built-in attack is registered once, in ATTACK_NAMES order, with a one-line summary', () => {
  assert.deepEqual(attackNames().slice(0, ATTACK_NAMES.length), [...ATTACK_NAMES]);
  assert.deepEqual(
    attackEntries().map((entry) => entry.name),
    attackNames(),
  );
  for (const entry of attackEntries()) {
    assert.ok(entry.summary.length > 10 && !entry.summary.includes('\n'), entry.name);
  }
  assert.deepEqual(attackEntry('sig')?.policies, ['clean-label']);
  assert.deepEqual(attackEntry('badnets-grid')?.policies, ['all-to-one', 'all-to-all']);
  assert.equal(attackEntry('nope'), undefined);
});

test('policies pick exactly the samples, labels and cross samples the code before them did', () => {
  const labels = lcgLabels();
  assert.equal(digest(labels), '41c8b41d05f55493');
  const file = whitePng();
  const options = { triggerFile: file, maskFile: file, watermarkFile: file };
  // [mode, target, rate, seed] → [count, indices, their new labels] (recorded before policies).
  const cases = [
    [
      ['all-to-one', 3, 0.1, 7],
      [100, 'a6f82acadbe66302', '76046df9bcda0a5b'],
    ],
    [
      ['all-to-all', 0, 0.05, 2],
      [50, '2d42f7b515847ba3', '8cda0b42b70d32e0'],
    ],
    [
      ['all-to-one', 0, 0.5, 1],
      [499, '012554a04796c097', '18a14bb49e74d5ef'],
    ],
  ] as const;
  const cleanLabel = {
    '3/0.1/7': [100, 'bba380bf66d962a4', '76046df9bcda0a5b'],
    '0/0.5/1': [97, 'd009c7fad6f1bf22', '8de76ee7eb6b32c3'],
  } as Record<string, readonly [number, string, string]>;
  const wanetCross: Record<string, readonly [number, string]> = {
    'all-to-one/3': [200, 'd6d70da74bdb6a57'],
    'all-to-all/0': [100, '4e717383d1cdb0a4'],
    'all-to-one/0': [498, '2878190212c52fa7'],
  };
  for (const name of ATTACK_NAMES) {
    for (const [[mode, target, poisonRate, seed], recorded] of cases) {
      const expected = name === 'sig' ? cleanLabel[`${target}/${poisonRate}/${seed}`] : recorded;
      if (expected === undefined) continue; // sig is clean-label only
      const attack = createAttack({ name, mode, target, poisonRate, seed, numClasses: 10, geometry, options });
      const poisoned = attack.poisonIndices(labels, 10);
      const newLabels = Int32Array.from(poisoned, (i) => attack.poisonedLabel(labels[i]!, 10));
      assert.deepEqual([poisoned.length, digest(poisoned), digest(newLabels)], [...expected], `${name} ${mode}`);
      const cross = attack.crossIndices(labels, poisoned);
      const expectedCross = name === 'wanet' ? wanetCross[`${mode}/${target}`]! : [0, digest(new Int32Array(0))];
      assert.deepEqual([cross.length, digest(cross)], [...expectedCross], `${name} cross`);
      attack.dispose();
    }
  }
});

test('the policy: chosen by mode or by name, checked against the attack, and what it means', () => {
  const labels = lcgLabels();
  const byMode = createAttack({ name: 'badnets-grid', mode: 'all-to-all', numClasses: 10, geometry });
  const byPolicy = createAttack({ name: 'badnets-grid', policy: 'all-to-all', numClasses: 10, geometry });
  const sig = createAttack({ name: 'sig', target: 4, numClasses: 10, geometry });
  const oneToOne = createAttack({ name: 'blended', target: 4, numClasses: 10, geometry });
  assert.equal(byMode.policy, 'all-to-all');
  assert.deepEqual(byMode.config, byPolicy.config, 'the same config, so the same run identity');
  assert.deepEqual(byPolicy.poisonIndices(labels, 10), byMode.poisonIndices(labels, 10));
  assert.deepEqual([byPolicy.mode, byPolicy.targetOf(9, 10), byPolicy.poisonedLabel(9, 10)], ['all-to-all', 0, 0]);
  // Clean-label: target-class samples only, labels kept, still one target at test time.
  assert.deepEqual(
    [sig.policy, sig.cleanLabel, sig.mode, sig.config.mode],
    ['clean-label', true, 'all-to-one', 'all-to-one'],
  );
  assert.ok([...sig.poisonIndices(labels, 10)].every((i) => labels[i] === 4));
  assert.deepEqual([sig.targetOf(7, 10), sig.poisonedLabel(4, 10)], [4, 4]);
  assert.deepEqual(
    [oneToOne.policy, oneToOne.cleanLabel, oneToOne.targetOf(7, 10), oneToOne.poisonedLabel(7, 10)],
    ['all-to-one', false, 4, 4],
  );
  assert.ok([...oneToOne.poisonIndices(labels, 10)].every((i) => labels[i] !== 4));
  for (const attack of [byMode, byPolicy, sig, oneToOne]) attack.dispose();

  assert.throws(
    () => createAttack({ name: 'sig', mode: 'all-to-all', numClasses: 10, geometry }),
    /^Error: sig supports clean-label poisoning, not all-to-all$/,
  );
  assert.throws(
    () => createAttack({ name: 'badnets-square', policy: 'clean-label', numClasses: 10, geometry }),
    /badnets-square supports all-to-one, all-to-all poisoning, not clean-label/,
  );
  assert.throws(
    () => createAttack({ name: 'blended', policy: 'all-to-all', mode: 'all-to-one', numClasses: 10, geometry }),
    /policy all-to-all does not go with mode all-to-one/,
  );
});

/** Adds a constant to every pixel; takes its policy from createAttack (any of the three). */
class Brighten extends Attack {
  readonly name = 'test-brighten';
  apply(images: Tensor): Tensor {
    return tidy(() => images.add(0.25).clamp(0, 1));
  }
}

test('an attack registered later is built by name with its policy, and listed', () => {
  const seen: AttackFactoryArgs[] = [];
  registerAttack({
    name: 'test-brighten',
    summary: 'adds 0.25 to every pixel',
    policies: ['all-to-one', 'clean-label', 'all-to-all'],
    create: (args) => {
      seen.push(args);
      return new Brighten(args.config, args.geometry, args.policy);
    },
  });
  assert.deepEqual(attackNames(), [...ATTACK_NAMES, 'test-brighten']);
  const attack = createAttack({ name: 'test-brighten', target: 2, poisonRate: 0.2, numClasses: 10, geometry });
  assert.ok(attack instanceof Brighten);
  assert.equal(attack.policy, 'all-to-one', 'the first policy is the default');
  assert.deepEqual(seen[0]!.config, { target: 2, mode: 'all-to-one', poisonRate: 0.2, seed: 0 });
  tidy(() =>
    assert.equal(
      attack
        .apply(full([1, 3, 12, 12], 0.5))
        .mean()
        .item(),
      0.75,
    ),
  );
  const policies: PoisonPolicy[] = ['clean-label', 'all-to-all'];
  for (const policy of policies) {
    const other = createAttack({ name: 'test-brighten', target: 2, policy, numClasses: 10, geometry });
    assert.equal(other.policy, policy);
    other.dispose();
  }
  assert.throws(
    () => createAttack({ name: 'nope', numClasses: 10, geometry }),
    new RegExp(`unknown attack 'nope'; known attacks: ${[...ATTACK_NAMES, 'test-brighten'].join(', ')}$`),
  );
  attack.dispose();
});

test('registerAttack refuses a second entry of a name, odd names, unknown policies and a policy it did not build', () => {
  const create = (args: AttackFactoryArgs): Attack => new Brighten(args.config, args.geometry);
  const entry = { name: 'badnets-grid', summary: 'again', policies: ['all-to-one'] as const, create };
  assert.throws(() => registerAttack(entry), /attack 'badnets-grid' is already registered/);
  assert.throws(() => registerAttack({ ...entry, name: 'Bad Name' }), /must be lower-case letters, digits and dashes/);
  assert.throws(() => registerAttack({ ...entry, name: 'no-policy', policies: [] }), /policies must be some of/);
  assert.throws(
    () => registerAttack({ ...entry, name: 'odd-policy', policies: ['one-to-one' as PoisonPolicy] }),
    /policies must be some of all-to-one, all-to-all, clean-label, got \[one-to-one\]/,
  );
  assert.throws(() => registerAttack({ ...entry, name: 'two-lines', summary: 'a\nb' }), /one non-empty line/);
  // An entry that ignores the policy it was asked for is caught by createAttack.
  registerAttack({ ...entry, name: 'ignores-policy', policies: ['all-to-one', 'clean-label'] });
  assert.throws(
    () => createAttack({ name: 'ignores-policy', policy: 'clean-label', numClasses: 10, geometry }),
    /asked for clean-label poisoning but built one with all-to-one/,
  );
  // A policy that contradicts the config's mode is refused by the attack itself.
  assert.throws(
    () => new Brighten({ target: 0, mode: 'all-to-all', poisonRate: 0.1, seed: 0 }, geometry, 'clean-label'),
    /a clean-label attack needs mode all-to-one, got all-to-all/,
  );
});
