// `npm run bench:scan-agreement -- DATA WEIGHTS CLASS...`: the detection scan's inversion of
// each named class from three random starts (seeds 0, 1, 2; 500 scan images of the seeded 5 %
// clean subset, 30 passes, the 'difference' restart), and the cosine between each pair of
// patterns: the agreement that confirms a flagged class (docs/mcldef.md, "Restarts instead of
// the half-median rule"). DATA: e.g. cifar10:../shared/data/cifar10-jpeg.
import { setNumThreads } from '../src/engine/autograd.js';
import { subset } from '../src/data/subset.js';
import { invertTrigger, largestCosine, pooledCorrelation } from '../src/defenses/mcldef/index.js';
import { buildModel, loadSplit } from '../src/pipeline/setup.js';

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
