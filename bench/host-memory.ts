// `npm run bench:host-memory`: WRN-16-1 SGD steps with the caching host allocator (the
// default) against libtorch's own (malloc; MCLDEF_HOST_MEMORY=system), in alternating child
// processes of one run. Prints the time, kernel time and minor page faults per step of each,
// and their ratio.
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { resourceUsage } from 'node:process';
import { parseArgs } from 'node:util';

import {
  F,
  getHostMemoryPolicy,
  type HostMemoryPolicy,
  optim,
  randint,
  randn,
  setNumThreads,
  tidy,
} from '../src/index.js';
import { WideResNet } from '../src/nn/models/wrn.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: String(availableParallelism()) },
    batch: { type: 'string', default: '256' },
    steps: { type: 'string', default: '6' },
    rounds: { type: 'string', default: '3' },
    child: { type: 'boolean', default: false },
  },
});

interface Sample {
  seconds: number;
  kernelSeconds: number;
  faults: number;
}

function measureHere(): Sample {
  setNumThreads(Number(values.threads));
  const batch = Number(values.batch);
  const steps = Number(values.steps);
  const model = new WideResNet({ depth: 16, widenFactor: 1, numClasses: 10 });
  const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  const x = randn([batch, 3, 32, 32]);
  const y = randint(0, 10, [batch]);
  model.train();

  const step = (): void =>
    tidy(() => {
      const loss = F.crossEntropy(model.forward(x), y);
      optimizer.zeroGrad();
      loss.backward();
      optimizer.step();
    });
  step(); // the first step allocates; it is not timed
  const before = resourceUsage();
  const start = performance.now();
  for (let i = 0; i < steps; i++) step();
  const after = resourceUsage();
  optimizer.dispose();
  x.dispose();
  y.dispose();
  model.dispose();
  return {
    seconds: (performance.now() - start) / 1000 / steps,
    kernelSeconds: (after.systemCPUTime - before.systemCPUTime) / 1e6 / steps,
    faults: (after.minorPageFault - before.minorPageFault) / steps,
  };
}

function measureIn(policy: HostMemoryPolicy): Sample {
  const args = [
    '--import',
    'tsx',
    process.argv[1]!,
    '--child',
    '--threads',
    values.threads,
    '--batch',
    values.batch,
    '--steps',
    values.steps,
  ];
  const output = execFileSync(process.execPath, args, {
    env: { ...process.env, MCLDEF_HOST_MEMORY: policy },
    encoding: 'utf8',
  });
  const reply = JSON.parse(output.trim().split('\n').at(-1)!) as Sample & { policy: HostMemoryPolicy };
  if (reply.policy !== policy) throw new Error(`the child ran with policy ${reply.policy}, not ${policy} (not glibc?)`);
  return reply;
}

if (values.child) {
  console.log(JSON.stringify({ policy: getHostMemoryPolicy(), ...measureHere() }));
  process.exit(0);
}

const samples: Record<HostMemoryPolicy, Sample[]> = { cache: [], system: [] };
for (let round = 0; round < Number(values.rounds); round++) {
  for (const policy of ['system', 'cache'] as const) {
    const sample = measureIn(policy);
    samples[policy].push(sample);
    console.log(
      `round ${round + 1} ${policy.padEnd(6)}: ${sample.seconds.toFixed(3)} s/step, kernel ${sample.kernelSeconds.toFixed(3)} s/step, ${sample.faults.toFixed(0)} minor faults/step`,
    );
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const cached = median(samples.cache.map((s) => s.seconds));
const system = median(samples.system.map((s) => s.seconds));
console.log(
  `WRN-16-1, batch ${values.batch}, ${values.threads} threads: cache ${cached.toFixed(3)} s/step vs system ${system.toFixed(3)} s/step: ${(system / cached).toFixed(2)}× faster with the caching allocator`,
);
