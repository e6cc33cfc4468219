// `npm run bench:reference`: the authors' released backdoored WRN-16-1
// (../shared/models/mcl-reference) on the JPEG CIFAR-10 test split: BA, and ASR/RA under
// its own trigger (badnets-grid, target 5) and under every other attack's trigger (which
// should stay low). PyTorch 1.13 measures BA 74.61 % and ASR 99.88 % on the same data.
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { data, setNumThreads } from '../src/index.js';
import { createAttack } from '../src/attacks/index.js';
import { evaluate } from '../src/eval/metrics.js';
import { loadWeights } from '../src/io/index.js';
import { WideResNet } from '../src/nn/models/wrn.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: 'cifar10:../shared/data/cifar10-jpeg' },
    weights: { type: 'string', default: '../shared/models/mcl-reference/WRN-16-1-badnet.pth.tar' },
    threads: { type: 'string', default: String(availableParallelism()) },
  },
});
setNumThreads(Number(values.threads));
const test = data.loadDataset(values.data, 'test');
const model = new WideResNet({ depth: 16, widenFactor: 1, numClasses: 10 });
loadWeights(model, values.weights);
const geometry = { channels: 3, height: 32, width: 32 };
const triggers = fileURLToPath(new URL('./triggers/', import.meta.url));
const attacks = [
  ['badnets-grid', {}],
  ['badnets-square', {}],
  ['blended', {}],
  ['sig', {}],
  ['wanet', {}],
  ['trojan', { watermarkFile: triggers + 'patch-trigger.png' }],
  ['patch', { triggerFile: triggers + 'patch-trigger.png', maskFile: triggers + 'patch-mask.png' }],
] as const;
console.log('| trigger (target 5) | BA % | ASR % | RA % | BA non-target % | seconds |');
console.log('|---|---|---|---|---|---|');
for (const [name, options] of attacks) {
  const attack = createAttack({ name, target: 5, numClasses: 10, geometry, options });
  const started = performance.now();
  const m = evaluate(model, test, { normalization: test.normalization, trigger: attack });
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `| ${name} | ${m.ba.toFixed(2)} | ${m.asr.toFixed(2)} | ${m.ra.toFixed(2)} | ${m.ba_non_target?.toFixed(2)} | ${seconds.toFixed(1)} |`,
  );
  attack.dispose();
}
model.dispose();
test.dispose();
