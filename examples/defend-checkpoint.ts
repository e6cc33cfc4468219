// Remove a backdoor from a checkpoint with the library: the same run as
//   mcldef defend --arch ARCH --weights FILE --data KIND:PATH --attack NAME --target K
// then the purified weights and the report files.
//
//   node examples/defend-checkpoint.ts --weights model.pth --data cifar10:./cifar-10 \
//     --attack badnets-grid --target 5 --out purified.safetensors
import { parseArgs } from 'node:util';

import { defendCheckpoint, io, writeReportFiles } from 'mcldef';

const { values } = parseArgs({
  options: {
    weights: { type: 'string' },
    data: { type: 'string' },
    arch: { type: 'string', default: 'wrn-16-1' },
    attack: { type: 'string' },
    target: { type: 'string' },
    out: { type: 'string', default: 'purified.safetensors' },
    'report-dir': { type: 'string', default: 'purified-report' },
    // MCLDef's options, for a quick run: inversion passes and purification epochs.
    passes: { type: 'string' },
    epochs: { type: 'string' },
    'clean-ratio': { type: 'string', default: '0.05' },
    'cache-dir': { type: 'string' },
    threads: { type: 'string' },
  },
});
if (values.weights === undefined || values.data === undefined) {
  console.error('usage: defend-checkpoint --weights FILE --data KIND:PATH [--attack NAME --target K]');
  process.exit(2);
}

const { model, report, figure } = await defendCheckpoint({
  weights: values.weights,
  data: values.data,
  arch: values.arch,
  cleanRatio: Number(values['clean-ratio']),
  // The attack is only measured (ASR before and after); the defense never sees it.
  ...(values.attack === undefined ? {} : { attack: values.attack }),
  // A target given is told to the defense; without one, MCLDef detects it.
  ...(values.target === undefined ? {} : { target: Number(values.target) }),
  methodOptions: {
    ...(values.passes === undefined ? {} : { passes: Number(values.passes) }),
    ...(values.epochs === undefined ? {} : { epochs: Number(values.epochs) }),
  },
  ...(values['cache-dir'] === undefined ? {} : { cacheDir: values['cache-dir'] }),
  ...(values.threads === undefined ? {} : { threads: Number(values.threads) }), // default: every core
  log: (line) => console.error(line),
});
io.saveWeights(values.out, model, { arch: values.arch, defense: report.method, target: report.target });
await writeReportFiles(values['report-dir'], { report, ...(figure === undefined ? {} : { figure }) });
model.dispose();
console.log(JSON.stringify(report, null, 2));
