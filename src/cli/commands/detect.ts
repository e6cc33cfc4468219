// mcldef detect: is this model backdoored, and towards which class? MCLDef's detection scan
// (per-class trigger inversion, MAD anomaly index, warp and signal scans).
import { Command } from 'commander';

import { subset } from '../../data/subset.js';
import { detectionLines, scanForBackdoor } from '../../defenses/mcldef/defense.js';
import { MCLDEF_OPTIONS, mcldefOptions } from '../../defenses/mcldef/options.js';
import {
  type CommonFlags,
  addCommonOptions,
  addModelOptions,
  applyCommon,
  buildModel,
  loadSplit,
  number,
  progressLine,
  runAction,
  say,
  writeJson,
} from '../common.js';
import { requireOptions } from '../config.js';
import { addSpecOptions, specValues } from '../method-options.js';
import { Option } from 'commander';

interface DetectFlags extends CommonFlags {
  arch?: string;
  weights: string;
  data: string;
  cleanRatio: number;
}

export function detectCommand(): Command {
  const command = new Command('detect').description(
    'is this model backdoored, and towards which class? (per-class trigger inversion + MAD anomaly index, warp and signal scans)',
  );
  addModelOptions(command, true);
  command.addOption(
    new Option('--clean-ratio <r>', 'fraction of the training split the defender holds (seeded by --seed)')
      .default(0.05)
      .argParser(number('--clean-ratio', 0, 1)),
  );
  addSpecOptions(command, MCLDEF_OPTIONS, 'mcldef detect', 'scan');
  addCommonOptions(command);
  requireOptions(command, ['--weights', '--data']);
  return command.action((flags: DetectFlags) => runAction(() => runDetect(flags)));
}

function runDetect(flags: DetectFlags): void {
  applyCommon(flags);
  const train = loadSplit(flags.data, 'train', flags);
  const clean = subset(train, flags.cleanRatio, { seed: flags.seed });
  train.dispose();
  const { model } = buildModel(flags, clean);
  try {
    say(flags, `scanning ${clean.numClasses} classes with ${Math.min(500, clean.count)} clean images…`);
    const options = mcldefOptions(specValues(MCLDEF_OPTIONS, flags as unknown as Record<string, unknown>));
    const detection = scanForBackdoor(model, clean, options, {
      seed: flags.seed,
      progress: (event) => progressLine(flags, event),
    });
    for (const line of detectionLines(detection)) say(flags, line);
    writeJson(flags.json, {
      detected_target: detection.target,
      flagged_by: detection.flaggedBy,
      decided_by: detection.decidedBy,
      margin: detection.margin,
      vetoed: detection.vetoed,
      median: detection.median,
      mad: detection.mad,
      classes: detection.classes,
      seconds: detection.seconds,
    });
  } finally {
    model.dispose();
    clean.dispose();
  }
}
