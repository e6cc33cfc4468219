// `npm run bench:scan-agreement -- DATA WEIGHTS CLASS...`: the detection scan's inversion of
// each named class from three random starts (seeds 0, 1, 2; 500 scan images of the seeded 5 %
// clean subset, 30 passes, the 'difference' restart), and the cosine between each pair of
// patterns: the agreement that confirms a flagged class (docs/mcldef.md, "Restarts instead of
// the half-median rule"). DATA: e.g. cifar10:../shared/data/cifar10-jpeg.
import { setNumThreads } from '../src/engine/autograd.js';
import { subset } from '../src/data/subset.js';
import * as F from '../src/engine/functional.js';
import { tidy } from '../src/engine/scope.js';
import type { Tensor } from '../src/engine/tensor.js';
import { invertTrigger, largestCosine } from '../src/defenses/mcldef/index.js';
import { buildModel, loadSplit } from '../src/pipeline/setup.js';

/**
 * Where two patterns put their mass, compared: Σ|Δ| over channels in cells of `cell`×`cell`
 * pixels, then the Pearson correlation of the two maps. Two inversions that keep different
 * pixels of one large trigger agree here where their pixels' cosine is near 0.
 */
function pooledCorrelation(a: Tensor, b: Tensor, cell = 4): number {
  return tidy(() => {
    const map = (pattern: Tensor): Tensor => {
      const mass = pattern.ndim === 2 ? pattern.abs().unsqueeze(0) : pattern.abs().sum(0, true);
      const pooled = F.avgPool2d(mass.unsqueeze(0), cell, { ceilMode: true }).flatten();
      return pooled.sub(pooled.mean());
    };
    const x = map(a);
    const y = map(b);
    const norm = x.norm().item() * y.norm().item();
    return norm === 0 ? 0 : x.mul(y).sum().item() / norm;
  });
}

const [data, weights, ...labels] = process.argv.slice(2);
if (data === undefined || weights === undefined || labels.length === 0) {
  console.error('usage: npm run bench:scan-agreement -- DATA WEIGHTS CLASS...');
  process.exit(1);
}
setNumThreads(2);
const train = loadSplit(data, 'train');
const clean = subset(train, 0.05, { seed: 0 });
train.dispose();
const scan = subset(clean, 500 / clean.count, { seed: 0 });
const { model } = buildModel(undefined, clean, weights);
for (const label of labels.map(Number)) {
  const triggers = [0, 1, 2].map((seed) =>
    invertTrigger(model, scan, label, { method: 'pattern', passes: 30, seed, dropLast: false, restart: 'difference' }),
  );
  const pairs = [
    [0, 1],
    [0, 2],
    [1, 2],
  ] as const;
  const cosines = pairs.map(([a, b]) => largestCosine([triggers[a]!.pattern, triggers[b]!.pattern]).toFixed(2));
  const pooled = (cell: number): string =>
    pairs.map(([a, b]) => pooledCorrelation(triggers[a]!.pattern, triggers[b]!.pattern, cell).toFixed(2)).join(', ');
  console.log(
    `class ${label}: sizes ${triggers.map((t) => t.size).join(', ')}; pairs (0,1) (0,2) (1,2): cosines ${cosines.join(', ')}; pooled correlation, 2-px cells ${pooled(2)}; 4-px cells ${pooled(4)}`,
  );
  for (const trigger of triggers) trigger.dispose();
}
model.dispose();
scan.dispose();
clean.dispose();
