// mcldef demo: the whole story on Debian's Fashion-MNIST (dataset-fashion-mnist), in
// minutes: train a small backdoored CNN (BadNets), measure it, detect the target without
// being told, purify, measure again, write the report.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { Command, Option } from 'commander';

import { DEBIAN_FASHION_MNIST } from '../../data/load.js';
import { evaluate } from '../../eval/metrics.js';
import { saveWeights } from '../../io/index.js';
import { trainDemoModel } from '../../pipeline/demo-model.js';
import {
  type CommonFlags,
  UsageError,
  addCommonOptions,
  applyCommon,
  integer,
  loadSplit,
  number,
  progressBar,
  runAction,
  say,
} from '../common.js';

interface DemoFlags extends CommonFlags {
  data: string;
  outDir: string;
  trainImages: number;
  epochs: number;
  target: number;
  refitHead: boolean;
  cleanWeight: number;
}

export function demoCommand(): Command {
  const command = new Command('demo')
    .description(
      'the whole story in minutes: backdoor a small CNN on Fashion-MNIST, detect the target, purify it, report',
    )
    .addOption(new Option('--data <kind:path>', 'dataset').default(`fashion-mnist:${DEBIAN_FASHION_MNIST}`))
    .addOption(new Option('--out-dir <dir>', 'where models and the report go').default('mcldef-demo'))
    .addOption(
      new Option('--train-images <n>', 'training images for the backdoored model')
        .default(20000)
        .argParser(integer('--train-images', 100)),
    )
    .addOption(
      new Option('--epochs <n>', 'training epochs of the backdoored model')
        .default(3)
        .argParser(integer('--epochs', 1)),
    )
    .addOption(
      new Option('--target <k>', "the attacker's target class (the defense is not told)")
        .default(0)
        .argParser(integer('--target', 0)),
    )
    .addOption(
      new Option(
        '--clean-weight <λ>',
        'weight of a cross-entropy term on the clean images from the second epoch on (`defend --clean-weight λ --clean-weight-from 1`); 0: the contrastive loss alone',
      )
        .default(1)
        .argParser(number('--clean-weight', 0)),
    )
    .addOption(
      new Option(
        '--no-refit-head',
        'do not re-fit the head on the clean data after purification (the demo does, as `defend --refit-head`)',
      ),
    );
  addCommonOptions(command);
  return command.action((flags: DemoFlags) => runAction(() => demo(flags)));
}

async function demo(flags: DemoFlags): Promise<void> {
  applyCommon(flags);
  if (
    flags.data.startsWith('fashion-mnist') &&
    !existsSync(DEBIAN_FASHION_MNIST) &&
    flags.data === `fashion-mnist:${DEBIAN_FASHION_MNIST}`
  ) {
    throw new UsageError(
      `Fashion-MNIST not found at ${DEBIAN_FASHION_MNIST}: sudo apt-get install dataset-fashion-mnist (or give --data)`,
    );
  }
  mkdirSync(flags.outDir, { recursive: true });
  const started = performance.now();
  const full = loadSplit(flags.data, 'train', flags);
  const test = loadSplit(flags.data, 'test', flags);
  say(
    flags,
    `1. The attacker trains a small CNN on ${Math.min(flags.trainImages, full.count)} ${full.source.split(':')[0]} images, 10 % of them stamped with a 3×3 BadNets patch and relabelled "${full.classNames[flags.target]}" (class ${flags.target}).`,
  );
  const bar = progressBar(flags, '   epoch {epoch} |{bar}| {value}/{total} batches | loss {loss} | {speed} img/s');
  let barEpoch = -1;
  let trained: ReturnType<typeof trainDemoModel>;
  try {
    trained = trainDemoModel({
      train: full,
      seed: flags.seed,
      attack: { name: 'badnets-square', target: flags.target },
      trainImages: flags.trainImages,
      epochs: flags.epochs,
      onBatch: (p) => {
        if (bar === null) return;
        if (p.epoch !== barEpoch) {
          if (barEpoch >= 0) bar.stop();
          bar.start(p.batches, 0, { epoch: p.epoch + 1, loss: '-', speed: '-' });
          barEpoch = p.epoch;
        }
        bar.update(p.batch, { loss: p.loss.toFixed(3), speed: p.imagesPerSecond.toFixed(0) });
      },
    });
  } finally {
    full.dispose();
  }
  const { model } = trained;
  const attack = trained.attack!;
  bar?.stop();
  const weights = join(flags.outDir, 'backdoored.safetensors');
  saveWeights(weights, model, { arch: 'cnn-small', attack: 'badnets-square', target: flags.target });
  const before = evaluate(model, test, { normalization: test.normalization, trigger: attack });
  say(
    flags,
    `   The backdoored model: BA ${before.ba.toFixed(2)} %, ASR ${before.asr.toFixed(2)} % (saved ${weights}).`,
  );
  model.dispose();
  attack.dispose();
  test.dispose();
  const args = defendArgs(flags, weights);
  say(
    flags,
    `2. The defender holds the model and 5 % clean training data, and is not told the target${flags.cleanWeight > 0 || flags.refitHead ? ' (the published loss, with what keeps BA on a short-trained model)' : ''}:\n   mcldef ${args.map(quoted).join(' ')}`,
  );
  const { runCli } = await import('../program.js');
  await runCli([process.argv[0] ?? 'node', 'mcldef', ...args]);
  if (process.exitCode !== undefined && process.exitCode !== 0) return;
  say(
    flags,
    `Done in ${((performance.now() - started) / 1000).toFixed(0)} s. Open ${join(flags.outDir, 'report', 'report.html')}.`,
  );
}

/** A shell word. */
function quoted(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/**
 * The `mcldef defend` command the demo runs: detection (the target is only the attack's, for
 * ASR), float32, and on a short-trained model the clean cross-entropy from the second epoch
 * and the head re-fit.
 */
function defendArgs(flags: DemoFlags, weights: string): string[] {
  return [
    'defend',
    ...['--arch', 'cnn-small', '--weights', weights, '--data', flags.data],
    ...['--attack', 'badnets-square', '--target', String(flags.target), '--detect'],
    ...['--seed', String(flags.seed), '--threads', String(flags.threads)],
    ...['--precision', 'float32', '--clean-feature-weight', '0'],
    ...(flags.cleanWeight > 0 ? ['--clean-weight', String(flags.cleanWeight), '--clean-weight-from', '1'] : []),
    ...(flags.refitHead ? ['--refit-head'] : []),
    ...['--out', join(flags.outDir, 'purified.safetensors'), '--report-dir', join(flags.outDir, 'report')],
    ...(flags.cacheDir === undefined ? [] : ['--cache-dir', flags.cacheDir]),
    ...(flags.device === undefined ? [] : ['--device', flags.device]),
    ...(flags.quiet === true ? ['--quiet'] : []),
    ...(flags.json === undefined ? [] : ['--json', flags.json]),
  ];
}
