// The data-only unpickler on pickles Python wrote (protocols 0–5), and the writer's
// integer and float encodings read back.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type PickleValue, PickleWriter, unpickle } from '../../src/io/pickle.js';
import { raw } from './craft.js';

// Made with Python 3.11:
//   obj = {'a': [1, 2**70, -5, -2**40, 3.5, 'ü€', b'xy', (1, 2), {3}, frozenset([5]), None, True, False,
//                255, 65535, 65536, -1],
//          'b': collections.OrderedDict(c=1), 'e': (), 't1': (1,), 't3': (1, 2, 3), 'd': {}}
//   pickle.dumps(obj, protocol=p).hex()
const PYTHON_PICKLES: Record<number, string> = {
  0: '286470300a56610a70310a286c70320a49310a614c313138303539313632303731373431313330333432344c0a61492d350a614c2d313039393531313632373737364c0a6146332e350a6156fc5c75323061630a70330a61635f636f646563730a656e636f64650a70340a285678790a70350a566c6174696e310a70360a7470370a5270380a612849310a49320a7470390a61635f5f6275696c74696e5f5f0a7365740a7031300a28286c7031310a49330a61747031320a527031330a61635f5f6275696c74696e5f5f0a66726f7a656e7365740a7031340a28286c7031350a49350a61747031360a527031370a614e614930310a614930300a61493235350a614936353533350a614936353533360a61492d310a617356620a7031380a63636f6c6c656374696f6e730a4f726465726564446963740a7031390a2874527032300a56630a7032310a49310a737356650a7032320a2874735674310a7032330a2849310a747032340a735674330a7032350a2849310a49320a49330a747032360a7356640a7032370a28647032380a732e',
  1: '7d71002858010000006171015d7102284b014c313138303539313632303731373431313330333432344c0a4afbffffff4c2d313039393531313632373737364c0a47400c0000000000005805000000c3bce282ac7103635f636f646563730a656e636f64650a71042858020000007879710558060000006c6174696e317106747107527108284b014b02747109635f5f6275696c74696e5f5f0a7365740a710a285d710b4b036174710c52710d635f5f6275696c74696e5f5f0a66726f7a656e7365740a710e285d710f4b05617471105271114e4930310a4930300a4bff4dffff4a000001004affffffff65580100000062711263636f6c6c656374696f6e730a4f726465726564446963740a71132952711458010000006371154b0173580100000065711629580200000074317117284b01747118580200000074337119284b014b024b0374711a580100000064711b7d711c752e',
  2: '80027d71002858010000006171015d7102284b018a090000000000000000404afbffffff8a060000000000ff47400c0000000000005805000000c3bce282ac7103635f636f646563730a656e636f64650a710458020000007879710558060000006c6174696e3171068671075271084b014b02867109635f5f6275696c74696e5f5f0a7365740a710a5d710b4b036185710c52710d635f5f6275696c74696e5f5f0a66726f7a656e7365740a710e5d710f4b05618571105271114e88894bff4dffff4a000001004affffffff65580100000062711263636f6c6c656374696f6e730a4f726465726564446963740a71132952711458010000006371154b01735801000000657116295802000000743171174b018571185802000000743371194b014b024b0387711a580100000064711b7d711c752e',
  3: '80037d71002858010000006171015d7102284b018a090000000000000000404afbffffff8a060000000000ff47400c0000000000005805000000c3bce282ac71034302787971044b014b02867105636275696c74696e730a7365740a71065d71074b0361857108527109636275696c74696e730a66726f7a656e7365740a710a5d710b4b056185710c52710d4e88894bff4dffff4a000001004affffffff65580100000062710e63636f6c6c656374696f6e730a4f726465726564446963740a710f2952711058010000006371114b01735801000000657112295802000000743171134b018571145802000000743371154b014b024b0387711658010000006471177d7118752e',
  4: '800495ad000000000000007d94288c0161945d94284b018a090000000000000000404afbffffff8a060000000000ff47400c0000000000008c05c3bce282ac9443027879944b014b0286948f94284b0390284b0591944e88894bff4dffff4a000001004affffffff658c0162948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c0163944b01738c016594298c027431944b0185948c027433944b014b024b0387948c0164947d94752e',
  5: '800595ad000000000000007d94288c0161945d94284b018a090000000000000000404afbffffff8a060000000000ff47400c0000000000008c05c3bce282ac9443027879944b014b0286948f94284b0390284b0591944e88894bff4dffff4a000001004affffffff658c0162948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c0163944b01738c016594298c027431944b0185948c027433944b014b024b0387948c0164947d94752e',
};

const tuple = (...items: PickleValue[]): PickleValue[] => Object.freeze(items) as PickleValue[];

const EXPECTED = new Map<PickleValue, PickleValue>([
  [
    'a',
    [
      1,
      2n ** 70n,
      -5,
      -(2 ** 40),
      3.5,
      'ü€',
      Uint8Array.from([0x78, 0x79]),
      tuple(1, 2),
      new Set([3]),
      new Set([5]),
      null,
      true,
      false,
      255,
      65535,
      65536,
      -1,
    ],
  ],
  ['b', new Map([['c', 1]])],
  ['e', tuple()],
  ['t1', tuple(1)],
  ['t3', tuple(1, 2, 3)],
  ['d', new Map()],
]);

for (const [protocol, hex] of Object.entries(PYTHON_PICKLES)) {
  test(`Python's protocol-${protocol} pickle of dicts, lists, tuples, sets, ints, floats, strings and bytes`, () => {
    const bytes = Uint8Array.from(Buffer.from(hex, 'hex'));
    const { value, end } = unpickle(bytes);
    assert.equal(end, bytes.length);
    assert.deepEqual(value, EXPECTED);
    const tupleValue = (value as Map<PickleValue, PickleValue>).get('t3') as PickleValue[];
    assert.ok(Object.isFrozen(tupleValue), 'tuples are frozen arrays');
  });
}

test('protocol 5 bytearray, and consecutive pickles in one buffer', () => {
  const bytearray = Buffer.from('8005950d000000000000009602000000000000007a7a942e', 'hex');
  const twice = Uint8Array.from([...bytearray, ...bytearray]);
  const first = unpickle(twice);
  assert.deepEqual(first.value, Uint8Array.from([0x7a, 0x7a]));
  const second = unpickle(twice, { start: first.end });
  assert.equal(second.end, twice.length);
});

test('memo and stack opcodes: PUT/GET, LONG_BINPUT, MEMOIZE, DUP, POP, POP_MARK', () => {
  // [x, x, x] where x = 'hi' stored three ways, plus DUP/POP/POP_MARK noise.
  const bytes = raw(
    0x80,
    4,
    ']', // EMPTY_LIST
    '(', // MARK
    0x8c,
    2,
    'hi',
    0x94, // MEMOIZE → memo[0]
    'r',
    [7, 0, 0, 0], // LONG_BINPUT 7
    'p9\n', // PUT 9
    'h',
    0, // BINGET 0
    'j',
    [7, 0, 0, 0], // LONG_BINGET 7
    '2', // DUP
    '0', // POP
    '(',
    'K',
    1,
    '1', // MARK, BININT1, POP_MARK
    'g9\n', // GET 9
    '0', // POP
    'e', // APPENDS
    '.',
  );
  assert.deepEqual(unpickle(bytes).value, ['hi', 'hi', 'hi']);
});

test('the writer encodes ints (BININT1/2, BININT, LONG1) and floats that read back exactly', () => {
  const ints: (number | bigint)[] = [
    0,
    255,
    256,
    65535,
    65536,
    -1,
    -128,
    2 ** 31 - 1,
    -(2 ** 31),
    2 ** 31,
    -(2 ** 31) - 1,
    2 ** 53 - 1,
    -(2 ** 53 - 1),
    2n ** 63n,
    -(2n ** 63n),
    2n ** 64n,
    127,
    -129,
  ];
  const floats = [0, -0, 1.5, 1e-300, -2.5e300, Infinity, -Infinity, NaN];
  const writer = new PickleWriter().proto(2).emptyList().mark();
  for (const value of ints) writer.int(value);
  for (const value of floats) writer.float(value);
  writer.appends().stop();
  assert.deepEqual(unpickle(writer.bytes()).value, [...ints, ...floats]);
});
