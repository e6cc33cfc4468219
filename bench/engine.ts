// `npm run bench:engine`: median ms per SGD step of WRN-16-1 (batch 64×3×32×32,
// cross-entropy, momentum 0.9) for this engine and for PyTorch (/usr/bin/python3 with
// python3-torch), timed in alternating rounds of one run at the same thread count,
// and the per-call overhead of a 1-element add.
// Options: --threads N (default: all cores), --rounds R (default 4), --steps S per round (default 10).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

import { F, manualSeed, optim, randint, randn, setNumThreads, ones, tidy } from '../src/index.js';
import { WideResNet } from '../src/nn/models/wrn.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: String(availableParallelism()) },
    rounds: { type: 'string', default: '4' },
    steps: { type: 'string', default: '10' },
  },
});
const threads = Number(values.threads);
const rounds = Number(values.rounds);
const stepsPerRound = Number(values.steps);

function median(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** A line-oriented conversation with the PyTorch child process. */
class PyTorchPeer {
  readonly #lines: AsyncIterator<string>;
  private constructor(readonly child: ReturnType<typeof spawn>) {
    this.#lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  }

  static async start(): Promise<PyTorchPeer | string> {
    if (!existsSync('/usr/bin/python3')) return '/usr/bin/python3 is absent';
    const child = spawn(
      '/usr/bin/python3',
      [new URL('./pytorch-engine.py', import.meta.url).pathname, String(threads)],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const peer = new PyTorchPeer(child);
    const first = await peer.#lines.next();
    if (first.done === true) {
      return /No module named 'torch'/.test(stderr)
        ? 'python3-torch is not installed (sudo apt-get install python3-torch)'
        : `the PyTorch helper failed: ${stderr.trim().split('\n').at(-1)}`;
    }
    return peer;
  }

  async ask<T>(command: string): Promise<T> {
    this.child.stdin!.write(command + '\n');
    const line = await this.#lines.next();
    if (line.done === true) throw new Error('the PyTorch helper exited');
    return JSON.parse(line.value) as T;
  }

  stop(): void {
    this.child.stdin!.end('quit\n');
  }
}

setNumThreads(threads);
manualSeed(0);
const model = new WideResNet({ depth: 16, widenFactor: 1, numClasses: 10 }).train();
const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
const x = randn([64, 3, 32, 32]);
const y = randint(0, 10, [64]);
const ourStep = (): void =>
  tidy(() => {
    const loss = F.crossEntropy(model.forward(x), y);
    optimizer.zeroGrad();
    loss.backward();
    optimizer.step();
  });

function timeOurs(count: number): number[] {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    ourStep();
    times.push(performance.now() - start);
  }
  return times;
}

function timeOurAdd(count: number): number {
  const one = ones([1]);
  const start = performance.now();
  for (let i = 0; i < count; i++) one.add(one).dispose();
  const perCall = ((performance.now() - start) * 1000) / count;
  one.dispose();
  return perCall;
}

const peer = await PyTorchPeer.start();
console.log(
  `WRN-16-1 SGD step, batch 64×3×32×32, ${threads} thread(s), ${rounds} alternating rounds of ${stepsPerRound} steps`,
);
timeOurs(3);
if (typeof peer !== 'string') await peer.ask('steps 3');
const ours: number[] = [];
const theirs: number[] = [];
for (let round = 0; round < rounds; round++) {
  const ourRound = timeOurs(stepsPerRound);
  ours.push(...ourRound);
  let line = `  round ${round + 1}: ours ${median(ourRound).toFixed(1)} ms`;
  if (typeof peer !== 'string') {
    const theirRound = (await peer.ask<{ ms: number[] }>(`steps ${stepsPerRound}`)).ms;
    theirs.push(...theirRound);
    line += `, PyTorch ${median(theirRound).toFixed(1)} ms`;
  }
  console.log(line);
}
timeOurAdd(20000);
const ourAdd = median([timeOurAdd(100000), timeOurAdd(100000), timeOurAdd(100000)]);
const rows: string[][] = [['', 'mcldef (TS + libtorch)', 'PyTorch (Python)', 'ratio']];
if (typeof peer === 'string') {
  rows.push(['WRN-16-1 step, median ms', median(ours).toFixed(1), `skipped: ${peer}`, '']);
  rows.push(['1-element add, µs/call', ourAdd.toFixed(2), '', '']);
} else {
  const theirAdd = median([
    (await peer.ask<{ us: number }>('add 100000')).us,
    (await peer.ask<{ us: number }>('add 100000')).us,
    (await peer.ask<{ us: number }>('add 100000')).us,
  ]);
  peer.stop();
  rows.push([
    'WRN-16-1 step, median ms',
    median(ours).toFixed(1),
    median(theirs).toFixed(1),
    (median(ours) / median(theirs)).toFixed(3),
  ]);
  rows.push(['1-element add, µs/call', ourAdd.toFixed(2), theirAdd.toFixed(2), (ourAdd / theirAdd).toFixed(3)]);
}
const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
for (const row of rows) console.log(row.map((cell, column) => cell.padEnd(widths[column]!)).join('  '));
console.log(`targets: step ratio ≤ 1.10; add ≤ 3 µs. Images/s (ours): ${((64 * 1000) / median(ours)).toFixed(0)}`);
model.dispose();
optimizer.dispose();
