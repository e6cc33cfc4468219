// `npm run bench:fuzz`: seeded fuzzing of the checkpoint readers. Mutated copies of the
// PyTorch fixtures (../shared/fixtures/pytorch), the authors' legacy model and a safetensors
// file made from a fixture are read with readWeights and loaded into a WideResNet. Every
// attempt must end in a result or a typed error (CheckpointError, StateDictError); any other
// exception is a crash, and so is the process dying: attempts run in a child process, and
// the parent restarts it after the attempt that killed it. Prints ok / typed / crash counts,
// error codes and the time taken; exits non-zero on any crash or leaked tensor.
// Options: --iterations N (default 10000), --seed S (default 1), --threads N (default 1).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { dispose, liveTensorCount, setNumThreads } from '../src/index.js';
import { CheckpointError, readWeights } from '../src/io/index.js';
import { safetensorsParts } from '../src/io/safetensors.js';
import { ZipReader, zipBytes } from '../src/io/zip.js';
import { StateDictError } from '../src/nn/module.js';
import { WideResNet } from '../src/nn/models/wrn.js';

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '10000' },
    seed: { type: 'string', default: '1' },
    threads: { type: 'string', default: '1' },
    worker: { type: 'string' },
  },
});
const iterations = Number(values.iterations);
const seed = Number(values.seed);
const shared = fileURLToPath(new URL('../../shared/', import.meta.url));

// ---- seeded randomness ----------------------------------------------------------------------

/** mulberry32: a small, fast, seedable generator. */
function generator(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The generator for attempt `index`: each attempt can be replayed on its own. */
function attemptRandom(index: number): { float: () => number; int: (below: number) => number } {
  const float = generator((Math.imul(seed, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0);
  return { float, int: (below: number) => Math.floor(float() * below) };
}

// ---- the corpus -------------------------------------------------------------------------------

interface Seed {
  name: string;
  bytes: Uint8Array;
  widenFactor: number;
  /** Where headers and pickles live (mutations focus there; the rest is tensor data). */
  hot: [number, number][];
  /** Zip seeds: the records, to mutate data.pkl and re-zip with valid CRCs. */
  records?: { name: string; data: Uint8Array }[];
}

function loadCorpus(): Seed[] {
  const fixtures = `${shared}fixtures/pytorch/`;
  if (!existsSync(fixtures)) {
    console.error(`${fixtures} is absent: the fuzzer mutates the shared PyTorch fixtures`);
    process.exit(2);
  }
  const seeds: Seed[] = [];
  const files: [string, number][] = [
    ['wrn16_1.zip.pth', 1],
    ['wrn16_1.legacy.pth.tar', 1],
    ['wrn16_1.bare.pth', 1],
    ['wrn16_2.zip.pth', 2],
    ['wrn16_2.legacy.pth.tar', 2],
    ['wrn16_2.bare.pth', 2],
  ];
  const reference = `${shared}models/mcl-reference/WRN-16-1-badnet.pth.tar`;
  for (const [file, widenFactor] of files) {
    const bytes = new Uint8Array(readFileSync(fixtures + file));
    if (file.includes('.legacy.')) {
      seeds.push({ name: file, bytes, widenFactor, hot: [[0, 12_500]] });
    } else {
      const archive = new ZipReader(bytes);
      const records = archive.names.map((name) => ({ name, data: archive.read(name).slice() }));
      seeds.push({
        name: file,
        bytes,
        widenFactor,
        hot: [
          [0, 10_300],
          [bytes.length - 9_000, bytes.length],
        ],
        records,
      });
    }
  }
  if (existsSync(reference)) {
    seeds.push({
      name: 'WRN-16-1-badnet.pth.tar',
      bytes: new Uint8Array(readFileSync(reference)),
      widenFactor: 1,
      hot: [[0, 21_600]],
    });
  }
  // A safetensors seed made from the first fixture.
  const checkpoint = readWeights(seeds[0]!.bytes);
  const parts = safetensorsParts(checkpoint.stateDict, { epoch: '7' });
  dispose(checkpoint.stateDict);
  const bytes = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  seeds.push({ name: 'wrn16_1.safetensors', bytes, widenFactor: 1, hot: [[0, parts[0]!.length]] });
  return seeds;
}

// ---- mutations ----------------------------------------------------------------------------------

const INTERESTING = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, 0x28, 0x2e, 0x52, 0x63, 0x71, 0x4b, 0x58, 0x8a, 0x93];

type Random = ReturnType<typeof attemptRandom>;

function position(random: Random, length: number, hot: [number, number][]): number {
  if (length === 0) return 0;
  const region = hot[random.int(hot.length)];
  if (region !== undefined && random.float() < 0.8) {
    const [from, to] = [Math.max(0, Math.min(region[0], length - 1)), Math.min(region[1], length)];
    if (to > from) return from + random.int(to - from);
  }
  return random.int(length);
}

function mutate(bytes: Uint8Array, random: Random, hot: [number, number][]): { bytes: Uint8Array; how: string } {
  const kind = random.int(5);
  const out = bytes.slice();
  switch (kind) {
    case 0: {
      const flips = 1 + random.int(8);
      for (let i = 0; i < flips && out.length > 0; i++) out[position(random, out.length, hot)]! ^= 1 << random.int(8);
      return { bytes: out, how: `${flips} bit flips` };
    }
    case 1: {
      const count = 1 + random.int(8);
      for (let i = 0; i < count && out.length > 0; i++) {
        out[position(random, out.length, hot)] =
          random.float() < 0.5 ? INTERESTING[random.int(INTERESTING.length)]! : random.int(256);
      }
      return { bytes: out, how: `${count} bytes replaced` };
    }
    case 2: {
      const cut = random.float() < 0.7 ? position(random, bytes.length, hot) : random.int(bytes.length + 1);
      return { bytes: bytes.slice(0, cut), how: `truncated at ${cut}` };
    }
    case 3: {
      const from = position(random, bytes.length, hot);
      const length = 1 + random.int(Math.min(512, bytes.length - from));
      const to = position(random, bytes.length, hot);
      const copy = new Uint8Array(bytes.length + length);
      copy.set(bytes.subarray(0, to));
      copy.set(bytes.subarray(from, from + length), to);
      copy.set(bytes.subarray(to), to + length);
      return { bytes: copy, how: `${length} bytes from ${from} duplicated at ${to}` };
    }
    default: {
      const from = position(random, bytes.length, hot);
      const length = 1 + random.int(Math.min(512, Math.max(1, bytes.length - from)));
      const copy = new Uint8Array(Math.max(0, bytes.length - length));
      copy.set(bytes.subarray(0, from));
      copy.set(bytes.subarray(from + length), from);
      return { bytes: copy, how: `${length} bytes removed at ${from}` };
    }
  }
}

/** The input for attempt `index`: a mutated seed, or for zips often a mutated data.pkl re-zipped. */
function makeInput(corpus: Seed[], index: number): { seed: Seed; bytes: Uint8Array; how: string } {
  const random = attemptRandom(index);
  const seed = corpus[random.int(corpus.length)]!;
  if (seed.records !== undefined && random.float() < 0.5) {
    let pickleMutation = '';
    const records = seed.records.map((record) => {
      if (!record.name.endsWith('/data.pkl')) return record;
      const { bytes, how } = mutate(record.data, random, [[0, record.data.length]]);
      pickleMutation = how;
      return { name: record.name, data: bytes };
    });
    // Now and then also drop records (storages, version) from the rebuilt archive.
    const dropRecords = random.float() < 0.1;
    const kept = dropRecords ? records.filter(() => random.float() > 0.02) : records;
    const how = `data.pkl: ${pickleMutation}, re-zipped${dropRecords ? ` without ${records.length - kept.length} records` : ''}`;
    return { seed, bytes: zipBytes(kept), how };
  }
  const { bytes, how } = mutate(seed.bytes, random, seed.hot);
  return { seed, bytes, how };
}

// ---- worker: runs attempts [from, to) and reports each on stdout ----------------------------------

function runWorker(from: number, to: number): void {
  setNumThreads(Number(values.threads));
  const corpus = loadCorpus();
  const models = new Map([1, 2].map((k) => [k, new WideResNet({ depth: 16, widenFactor: k, numClasses: 10 }).eval()]));
  const baseline = liveTensorCount();
  for (let index = from; index < to; index++) {
    const { seed, bytes, how } = makeInput(corpus, index);
    const started = performance.now();
    let outcome: string;
    try {
      const checkpoint = readWeights(bytes);
      try {
        models.get(seed.widenFactor)!.loadStateDict(checkpoint.stateDict, { strict: true });
      } finally {
        dispose(checkpoint.stateDict);
      }
      outcome = 'ok\t-';
    } catch (error) {
      if (error instanceof CheckpointError) outcome = `typed\t${error.code}`;
      else if (error instanceof StateDictError) outcome = 'typed\tstate-dict';
      else {
        const detail =
          error instanceof Error
            ? `${error.name}: ${error.message} @ ${error.stack?.split('\n')[1]?.trim() ?? ''}`
            : String(error);
        outcome = `crash\t${detail.replace(/\s+/g, ' ').slice(0, 300)}`;
      }
    }
    const milliseconds = performance.now() - started;
    // Reported at once (synchronously), so the parent knows which attempt killed a dead worker.
    writeSync(1, `${index}\t${outcome}\t${milliseconds.toFixed(2)}\t${seed.name}: ${how}\n`);
  }
  // Every tensor a read made was freed: only the models' own remain.
  writeSync(1, `leaked\t${liveTensorCount() - baseline}\n`);
  for (const model of models.values()) model.dispose();
}

// ---- parent: runs workers, restarts after a process crash, summarizes ------------------------------

interface Report {
  index: number;
  kind: 'ok' | 'typed' | 'crash';
  code: string;
  milliseconds: number;
  what: string;
}

function runParent(): void {
  const script = fileURLToPath(import.meta.url);
  const reports = new Map<number, Report>();
  const processCrashes: { index: number; reason: string }[] = [];
  let leaked = 0;
  const started = performance.now();
  let next = 0;
  while (next < iterations) {
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        script,
        '--worker',
        `${next}:${iterations}`,
        '--seed',
        String(seed),
        '--threads',
        String(values.threads),
      ],
      {
        encoding: 'utf8',
        maxBuffer: 1 << 30,
        stdio: ['ignore', 'pipe', 'pipe'],
        // A hang counts as a crash too: a generous limit for the attempts left.
        timeout: 60_000 + (iterations - next) * 250,
      },
    );
    let last = next - 1;
    for (const line of child.stdout.split('\n')) {
      const fields = line.split('\t');
      if (fields[0] === 'leaked') {
        leaked += Number(fields[1]);
        continue;
      }
      if (fields.length < 5) continue;
      const [index, kind, code, milliseconds, what] = fields as [string, Report['kind'], string, string, string];
      reports.set(Number(index), { index: Number(index), kind, code, milliseconds: Number(milliseconds), what });
      last = Math.max(last, Number(index));
    }
    if (child.status === 0 && last >= iterations - 1) break;
    // The process died (or stopped early): the attempt after the last report killed it.
    const culprit = last + 1;
    const reason =
      child.signal !== null ? `signal ${child.signal}` : `exit ${child.status}: ${child.stderr.slice(-500)}`;
    processCrashes.push({ index: culprit, reason });
    next = culprit + 1;
  }
  const seconds = (performance.now() - started) / 1000;
  const all = [...reports.values()];
  const count = (kind: Report['kind']): number => all.filter((report) => report.kind === kind).length;
  const codes = new Map<string, number>();
  for (const report of all) if (report.kind === 'typed') codes.set(report.code, (codes.get(report.code) ?? 0) + 1);
  const slowest = [...all].sort((a, b) => b.milliseconds - a.milliseconds)[0];
  const crashes = all.filter((report) => report.kind === 'crash');
  console.log(`fuzzed ${iterations} mutated checkpoints (seed ${seed}) in ${seconds.toFixed(1)} s`);
  console.log(`  ok:           ${count('ok')}`);
  console.log(
    `  typed errors: ${count('typed')}  (${[...codes]
      .sort((a, b) => b[1] - a[1])
      .map(([code, n]) => `${code} ${n}`)
      .join(', ')})`,
  );
  console.log(
    `  crashes:      ${crashes.length + processCrashes.length} (exceptions ${crashes.length}, process deaths ${processCrashes.length})`,
  );
  console.log(`  leaked tensors: ${leaked}`);
  if (slowest !== undefined)
    console.log(`  slowest attempt: ${slowest.milliseconds.toFixed(1)} ms (#${slowest.index}, ${slowest.what})`);
  for (const crash of crashes.slice(0, 10)) console.log(`  crash #${crash.index} (${crash.what}): ${crash.code}`);
  for (const crash of processCrashes.slice(0, 10)) console.log(`  process died at #${crash.index}: ${crash.reason}`);
  if (crashes.length + processCrashes.length > 0 || leaked !== 0) process.exit(1);
}

if (values.worker !== undefined) {
  const [from, to] = values.worker.split(':').map(Number) as [number, number];
  runWorker(from, to);
} else {
  runParent();
}
