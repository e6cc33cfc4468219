// mcldef eval: BA, and ASR/RA under an attack's test-time trigger.
import { Command } from 'commander';

import { evaluate } from '../../eval/metrics.js';
import {
  type AttackFlags,
  type CommonFlags,
  addAttackOptions,
  addCommonOptions,
  addModelOptions,
  applyCommon,
  buildAttack,
  buildModel,
  loadSplit,
  say,
  runAction,
  writeJson,
} from '../common.js';
import { requireOptions } from '../config.js';

interface EvalFlags extends CommonFlags, AttackFlags {
  arch?: string;
  weights: string;
  data: string;
}

export function evalCommand(): Command {
  const command = new Command('eval').description(
    "a model's BA on the clean test split, and ASR/RA under an attack's trigger",
  );
  addModelOptions(command, true);
  addAttackOptions(command);
  addCommonOptions(command);
  requireOptions(command, ['--weights', '--data']);
  return command.action((flags: EvalFlags) => runAction(() => runEval(flags)));
}

function runEval(flags: EvalFlags): void {
  applyCommon(flags);
  const testSplit = loadSplit(flags.data, 'test', flags);
  const { model, arch } = buildModel(flags, testSplit);
  const attack = buildAttack(flags, testSplit, arch);
  const started = performance.now();
  const metrics = evaluate(model, testSplit, {
    normalization: testSplit.normalization,
    ...(attack === undefined ? {} : { trigger: attack }),
  });
  const seconds = (performance.now() - started) / 1000;
  say(flags, `BA ${metrics.ba.toFixed(2)}% on ${metrics.clean_n} clean test images`);
  if (attack !== undefined) {
    say(
      flags,
      `ASR ${metrics.asr.toFixed(2)}%  RA ${metrics.ra.toFixed(2)}% on ${metrics.poison_n} triggered images (${attack.name}, ${attack.mode}, target ${flags.target}); ${metrics.asr_no_trigger.toFixed(2)}% of the same images reach the target without the trigger; BA over non-target images ${metrics.ba_non_target?.toFixed(2) ?? '-'}%`,
    );
  }
  say(flags, `(${seconds.toFixed(1)} s)`);
  writeJson(flags.json, attack === undefined ? { ba: metrics.ba, clean_n: metrics.clean_n } : metrics);
  attack?.dispose();
  model.dispose();
}
