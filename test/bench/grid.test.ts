// Grid files: expansion into models and cells, ids from the resolved configuration (same
// config → same id, any changed option → a new one), errors that name the line and the key.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { attackFlags, modelWeights } from '../../src/bench/cell.js';
import { GridError, canonicalJson, parseGrid, selectCells } from '../../src/bench/grid.js';
import { temporaryFolder } from '../helpers/tmp.js';
import { tinyImageFolder } from '../helpers/tiny-data.js';

const data = tinyImageFolder({ count: 4 });
const folder = temporaryFolder('mcldef-grid-');
writeFileSync(join(folder, 'pattern.png'), Buffer.from('not really a png, hashed only'));

const base = (extra = ''): string => `data: imagefolder:${data}
arch: wrn-16-1
seeds: [0, 1]
epochs: 2
attacks:
  - name: badnets-square
    target: 0
  - name: blended
    alpha: 0.2
    pattern: pattern.png
  - name: none
    measure-with: badnets-grid
defenses:
  - name: ft
    epochs: 3
  - name: clp
${extra}`;

const file = join(folder, 'grid.yaml');
const grid = (text: string) => parseGrid(text, file);
const ids = (text: string): string[] => grid(text).cells.map((cell) => cell.id);

test('a grid expands into seeds × attacks models and × defenses cells, defaults resolved', () => {
  const expanded = grid(base());
  assert.equal(expanded.models.length, 2 * 3);
  assert.equal(expanded.cells.length, 2 * 3 * 2);
  assert.equal(new Set(expanded.cells.map((c) => c.id)).size, expanded.cells.length);
  const [first] = expanded.cells;
  assert.equal(first!.model.label, 'badnets-square');
  assert.equal(first!.model.attack!['poison-rate'], 0.1);
  assert.equal(first!.model.train.lr, 0.1);
  assert.equal(first!.defense.options.epochs, 3);
  assert.equal(first!.defense.options.lr, 0.01, "ft's default lr is filled in");
  assert.equal(first!['clean-ratio'], 0.05);
  assert.equal(first!.detect, true);
  const clean = expanded.cells.find((c) => c.model.label === 'clean')!;
  assert.equal(clean.model.attack, null);
  assert.equal(clean.measure!.attack.name, 'badnets-grid');
  const blended = expanded.models.find((m) => m.label === 'blended')!;
  assert.equal(blended.attack!.pattern!.path, join(folder, 'pattern.png'));
  // Cells of one model and seed share it.
  const badnets = expanded.cells.filter((c) => c.model.label === 'badnets-square' && c.seed === 0);
  assert.equal(new Set(badnets.map((c) => c.model.id)).size, 1);
  assert.notEqual(expanded.cells.find((c) => c.seed === 1)!.model.id, badnets[0]!.model.id);
});

test('the same configuration gives the same ids, whatever its layout, order of keys or defaults written out', () => {
  assert.deepEqual(ids(base()), ids(base()));
  const reordered = base().replace('  - name: ft\n    epochs: 3', '  - epochs: 3\n    name: ft');
  assert.deepEqual(ids(reordered), ids(base()));
  const explicit = base()
    .replace('    epochs: 3', '    epochs: 3\n    lr: 0.01')
    .replace('epochs: 2', 'epochs: 2\nclean-ratio: 0.05');
  assert.deepEqual(ids(explicit), ids(base()));
  const json = JSON.stringify({
    data: `imagefolder:${data}`,
    arch: 'wrn-16-1',
    seeds: [0, 1],
    epochs: 2,
    attacks: [
      { name: 'badnets-square', target: 0 },
      { name: 'blended', alpha: 0.2, pattern: 'pattern.png' },
      { name: 'none', 'measure-with': 'badnets-grid' },
    ],
    defenses: [{ name: 'ft', epochs: 3 }, { name: 'clp' }],
  });
  assert.deepEqual(ids(json), ids(base()), 'JSON is accepted');
  assert.equal(canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] }), '{"a":[2,{"c":4,"d":3}],"b":1}');
});

test('any changed option gives new ids to exactly the cells it touches', () => {
  const before = grid(base()).cells;
  const changed = (text: string): Set<number> => {
    const after = grid(text).cells;
    assert.equal(after.length, before.length);
    return new Set(after.flatMap((cell, i) => (cell.id === before[i]!.id ? [] : [i])));
  };
  const all = new Set(before.map((_, i) => i));
  const where = (predicate: (i: number) => boolean): Set<number> => new Set([...all].filter(predicate));
  // A defense option: that defense's cells only.
  assert.deepEqual(
    changed(base().replace('epochs: 3', 'epochs: 4')),
    where((i) => before[i]!.defense.name === 'ft'),
  );
  // An attack option: that attack's cells (both seeds, both defenses).
  assert.deepEqual(
    changed(base().replace('alpha: 0.2', 'alpha: 0.3')),
    where((i) => before[i]!.model.label === 'blended'),
  );
  // The trigger file's content, not its name.
  writeFileSync(join(folder, 'pattern.png'), Buffer.from('another pattern'));
  assert.deepEqual(
    changed(base()),
    where((i) => before[i]!.model.label === 'blended'),
  );
  writeFileSync(join(folder, 'pattern.png'), Buffer.from('not really a png, hashed only'));
  assert.deepEqual(changed(base()), new Set());
  // The measuring trigger of a clean model: its cells, not its model.
  const measured = grid(base().replace('measure-with: badnets-grid', 'measure-with: badnets-square'));
  assert.deepEqual(
    changed(base().replace('measure-with: badnets-grid', 'measure-with: badnets-square')),
    where((i) => before[i]!.model.label === 'clean'),
  );
  assert.equal(
    measured.models.find((m) => m.label === 'clean')!.id,
    grid(base()).models.find((m) => m.label === 'clean')!.id,
  );
  // Shared settings: every cell.
  for (const edit of [
    'epochs: 2|epochs: 3',
    'arch: wrn-16-1|arch: resnet18',
    'seeds: [0, 1]|seeds: [0, 1]\nclean-ratio: 0.1',
  ]) {
    const [from, to] = edit.split('|') as [string, string];
    assert.deepEqual(changed(base().replace(from, to)), all, edit);
  }
  assert.deepEqual(changed(base('train:\n  lr: 0.05\n')), all);
  assert.deepEqual(changed(base('detect: false\n')), all);
});

test('a trojan may take its watermark from another entry’s model, which it then needs first', () => {
  const text = base().replace(
    '  - name: none\n    measure-with: badnets-grid',
    '  - name: none\n    measure-with: badnets-grid\n  - name: trojan\n    trojan-model: "@clean"',
  );
  const expanded = grid(text);
  const trojan = expanded.cells.find((c) => c.model.label === 'trojan' && c.seed === 1)!;
  const clean = expanded.models.find((m) => m.label === 'clean' && m.seed === 1)!;
  assert.deepEqual(trojan.model.attack!['trojan-model'], { model: clean.id });
  assert.deepEqual(
    trojan.needs.map((m) => m.id),
    [clean.id],
  );
  assert.throws(
    () => grid(base().replace('target: 0', 'target: 0\n    trojan-model: "@nobody"')),
    /no attack labelled 'nobody'/,
  );
});

test('a selection keeps the whole grid’s ids and the models its cells need, trojans’ clean models included', () => {
  const whole = grid(
    base().replace(
      '  - name: none\n    measure-with: badnets-grid',
      '  - name: none\n    measure-with: badnets-grid\n  - name: trojan\n    trojan-model: "@clean"',
    ),
  );
  const part = selectCells(whole, { models: ['trojan', 'blended'], defenses: ['clp'], seeds: [1] });
  const expected = whole.cells.filter(
    (c) => ['trojan', 'blended'].includes(c.model.label) && c.defense.label === 'clp' && c.seed === 1,
  );
  assert.equal(expected.length, 2);
  assert.deepEqual(
    part.cells.map((c) => c.id),
    expected.map((c) => c.id),
  );
  assert.deepEqual(part.models.map((m) => `${m.label}/${m.seed}`).sort(), ['blended/1', 'clean/1', 'trojan/1']);
  assert.equal(selectCells(whole).cells.length, whole.cells.length);
  assert.equal(selectCells(whole, { defenses: ['ft'] }).cells.length, whole.cells.length / 2);
  assert.throws(
    () => selectCells(whole, { models: ['badnet'] }),
    /no model 'badnet' in the grid \(it has: .*badnets-square/,
  );
  assert.throws(() => selectCells(whole, { defenses: ['nad'] }), /no defense 'nad'.*ft, clp/);
  assert.throws(() => selectCells(whole, { seeds: [7] }), /no seed '7'/);
});

test('a defense entry may set clean-ratio, evidence, detect, monitor and verify for its own cells', () => {
  const whole = grid(base());
  const own = grid(base().replace('  - name: clp', '  - name: clp\n    evidence: 0\n    detect: false'));
  const everywhere = grid(`evidence: 0\ndetect: false\n${base()}`);
  for (const [i, cell] of own.cells.entries()) {
    const from = cell.defense.name === 'clp' ? everywhere : whole;
    assert.equal(cell.id, from.cells[i]!.id, `${cell.model.label} × ${cell.defense.label}`);
    assert.deepEqual([cell.evidence, cell.detect], cell.defense.name === 'clp' ? [0, false] : [0.1, true]);
  }
  // verify: true is a new cell; verify: false is the cell without it.
  const verified = grid(base().replace('  - name: clp', '  - name: clp\n    verify: true'));
  const unverified = grid(base().replace('  - name: clp', '  - name: clp\n    verify: false'));
  for (const [i, cell] of verified.cells.entries()) {
    assert.equal(cell.verify, cell.defense.name === 'clp');
    assert.equal(cell.id === whole.cells[i]!.id, cell.defense.name !== 'clp');
    assert.equal(unverified.cells[i]!.id, whole.cells[i]!.id);
  }
  assert.throws(
    () => grid(base().replace('  - name: clp', '  - name: clp\n    evidence: 0.9')),
    /grid\.yaml:\d+: defenses\[1\]\.evidence: expected a number in \[0, 0\.5\]/,
  );
});

test('an attack as defend flags: its own options, files as paths, a trojan’s clean model in the artifacts', () => {
  const expanded = grid(
    base()
      .replace('    alpha: 0.2', '    alpha: 0.2\n    attack-seed: 4')
      .replace('  - name: none\n', '  - name: trojan\n    trojan-model: "@clean"\n  - name: none\n'),
  );
  const attackOf = (label: string) => expanded.models.find((m) => m.label === label && m.seed === 0)!.attack!;
  assert.deepEqual(attackFlags(attackOf('blended'), '/artifacts'), [
    ...['--attack', 'blended', '--target', '0', '--poison-rate', '0.1'],
    ...['--attack-seed', '4', '--alpha', '0.2', '--pattern', join(folder, 'pattern.png')],
  ]);
  const clean = expanded.models.find((m) => m.label === 'clean' && m.seed === 0)!;
  assert.deepEqual(attackFlags(attackOf('trojan'), '/artifacts'), [
    ...['--attack', 'trojan', '--target', '0', '--poison-rate', '0.1'],
    ...['--trojan-model', modelWeights('/artifacts', clean.id)],
  ]);
});

test('errors name the file, the line and the key', () => {
  const cases: [string, RegExp][] = [
    [base('colour: red\n'), /grid\.yaml:17: colour: unknown key for a grid/],
    [
      base().replace('    target: 0', '    target: 0\n    poison: 0.1'),
      /grid\.yaml:8: attacks\[0\]\.poison: unknown key for an attack/,
    ],
    [base().replace('alpha: 0.2', 'alpha: high'), /grid\.yaml:9: attacks\[1\]\.alpha: expected a number/],
    [base().replace('name: clp', 'name: magic'), /grid\.yaml:16: defenses\[1\]\.name: unknown defense 'magic'/],
    [
      base().replace('epochs: 3', 'epoch: 3'),
      /grid\.yaml:15: defenses\[0\]\.epoch: defense 'ft' has no option 'epoch'/,
    ],
    [base().replace('epochs: 3', 'epochs: -3'), /grid\.yaml:15: defenses\[0\]\.epochs: /],
    [
      base().replace('pattern: pattern.png', 'pattern: missing.png'),
      /grid\.yaml:10: attacks\[1\]\.pattern: no such file: .*missing\.png/,
    ],
    [
      base().replace(`data: imagefolder:${data}`, 'data: imagefolder:/nowhere'),
      /grid\.yaml:1: data: dataset folder not found/,
    ],
    [base().replace('arch: wrn-16-1', 'arch: lenet'), /grid\.yaml:2: arch: unknown architecture 'lenet'/],
    [base().replace('seeds: [0, 1]', 'seeds: [0, x]'), /grid\.yaml:3: seeds\[1\]: expected an integer/],
    [base().replace('  - name: clp', '  - name: ft'), /defenses\[1\]: label 'ft' is used twice/],
    ['data: [unclosed\n', /grid\.yaml:\d+: not valid YAML or JSON/],
    [`arch: wrn-16-1\n`, /grid\.yaml:1: missing key 'data'/],
  ];
  for (const [text, pattern] of cases) {
    let message = '(no error)';
    try {
      grid(text);
    } catch (error) {
      assert.ok(error instanceof GridError, String(error));
      message = error.message;
    }
    assert.match(message, pattern);
  }
});

test('a given checkpoint (weights:) is one model for every seed, identified by its content', () => {
  writeFileSync(join(folder, 'given.safetensors'), Buffer.from('weights, hashed only'));
  const text = base().replace(
    '  - name: none\n',
    '  - name: badnets-grid\n    label: given\n    target: 5\n    weights: given.safetensors\n  - name: none\n',
  );
  const expanded = grid(text);
  const given = expanded.models.filter((m) => m.label === 'given');
  assert.equal(given.length, 1, 'the same model for both seeds');
  assert.equal(given[0]!.weights!.path, join(folder, 'given.safetensors'));
  const cells = expanded.cells.filter((c) => c.model.label === 'given');
  assert.equal(cells.length, 2 * 2, 'still a cell per seed and defense (each seed its own clean subset)');
  assert.equal(grid(text.replace('epochs: 2', 'epochs: 5')).models.find((m) => m.label === 'given')!.id, given[0]!.id);
  writeFileSync(join(folder, 'given.safetensors'), Buffer.from('other weights'));
  assert.notEqual(grid(text).models.find((m) => m.label === 'given')!.id, given[0]!.id);
});
