// mcldef defend: run a registered defense on a model (options in, library call, files out).
// The method's flags come from its registry entry: `mcldef defend --method NAME --help`.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import { Command, Option } from 'commander';

import { DEFAULT_EVIDENCE_FRACTION } from '../../defenses/pipeline.js';
import { defenseEntry, defenseNames } from '../../defenses/registry.js';
import { saveWeights } from '../../io/index.js';
import { defendCheckpoint } from '../../pipeline/defend-checkpoint.js';
import { attackSettings } from '../../pipeline/setup.js';
import { writeReportFiles } from '../../report/files.js';
import {
  type AttackFlags,
  type CommonFlags,
  UsageError,
  addAttackOptions,
  addCommonOptions,
  addModelOptions,
  integer,
  number,
  progressLine,
  runAction,
  say,
  writeJson,
} from '../common.js';
import { requireOptions } from '../config.js';
import { addSpecOptions, specValues } from '../method-options.js';

interface DefendFlags extends CommonFlags, AttackFlags {
  arch?: string;
  weights: string;
  data: string;
  method: string;
  cleanRatio: number;
  detect?: boolean;
  monitor: number;
  evidence: number;
  verify?: boolean;
  checkpoint?: string;
  out?: string;
  reportDir?: string;
}

const WEIGHTS_NAME = /\.(safetensors|pth|pt|pth\.tar)$/;

/** `mcldef defend`, with the flags of `method` (the one named by --method, or the default). */
export function defendCommand(method = 'mcldef'): Command {
  const command = new Command('defend').description(
    'remove a backdoor with a registered defense (--method; default mcldef); saves the model and a report',
  );
  addModelOptions(command, true);
  addAttackOptions(command);
  command
    .addOption(
      new Option('--method <name>', 'defense (mcldef list shows them)').choices(defenseNames()).default('mcldef'),
    )
    .addOption(
      new Option('--clean-ratio <r>', 'fraction of the training split the defender holds (seeded by --seed)')
        .default(0.05)
        .argParser(number('--clean-ratio', 0, 1)),
    )
    .addOption(
      new Option(
        '--detect',
        "find the target by detection even though --target is given (--target then only names the attack's target for ASR)",
      ),
    )
    .addOption(
      new Option('--monitor <n>', "test images for the report's per-epoch BA/ASR chart (with --attack; 0: none)")
        .default(500)
        .argParser(integer('--monitor', 0)),
    )
    .addOption(
      new Option(
        '--evidence <fraction>',
        'fraction of the clean data held out from the defense, on which the trigger it finds is measured before and after (0: none)',
      )
        .default(DEFAULT_EVIDENCE_FRACTION)
        .argParser(number('--evidence', 0, 0.5)),
    )
    .addOption(
      new Option(
        '--verify',
        "run the detection scan again on the defended model (MCLDef's scan; with a told target or another method, also before): about as long as the scan itself",
      ),
    )
    .addOption(
      new Option(
        '--checkpoint <file>',
        'save the progress of a defense that runs in rounds (sau) after each one, and continue from it when the same command runs again; removed when done',
      ),
    )
    .addOption(new Option('--out <file>', 'defended weights (.safetensors or .pth)'))
    .addOption(
      new Option(
        '--report-dir <dir>',
        'where report.json, report.html and the figure go (default: OUT-report/, or mcldef-report/)',
      ),
    );
  addCommonOptions(command);
  if (defenseNames().includes(method)) {
    const entry = defenseEntry(method);
    addSpecOptions(command, entry.options, `defense '${method}'`);
    command.description(`${command.description()}\n\n--method ${method}: ${entry.summary}`);
  }
  requireOptions(command, ['--weights', '--data']);
  return command.action((flags: DefendFlags, cmd: Command) =>
    runAction(() => runDefend(flags, ['cli', 'config'].includes(cmd.getOptionValueSource('target') ?? ''))),
  );
}

async function runDefend(flags: DefendFlags, targetGiven: boolean): Promise<void> {
  // Fail before the work, not after it: check the output's name and make its folder now.
  if (flags.out !== undefined) {
    if (!WEIGHTS_NAME.test(flags.out)) throw new UsageError(`--out ${flags.out}: use a .safetensors or .pth file name`);
    mkdirSync(dirname(flags.out), { recursive: true });
  }
  if (flags.checkpoint !== undefined) mkdirSync(dirname(flags.checkpoint), { recursive: true });
  const entry = defenseEntry(flags.method);
  const { model, report, figure } = await defendCheckpoint({
    weights: flags.weights,
    data: flags.data,
    ...(flags.arch === undefined ? {} : { arch: flags.arch }),
    method: flags.method,
    methodOptions: specValues(entry.options, flags as unknown as Record<string, unknown>),
    cleanRatio: flags.cleanRatio,
    ...(targetGiven ? { target: flags.target } : {}),
    ...(flags.detect === true ? { detect: true } : {}),
    ...(flags.attack === undefined
      ? {}
      : {
          attack: flags.attack,
          ...attackSettings(flags),
          ...(flags.attackSeed === undefined ? {} : { attackSeed: flags.attackSeed }),
        }),
    monitor: flags.monitor,
    evidence: flags.evidence,
    ...(flags.verify === true ? { verify: true } : {}),
    ...(flags.checkpoint === undefined ? {} : { checkpoint: flags.checkpoint }),
    seed: flags.seed,
    threads: flags.threads,
    ...(flags.device === undefined ? {} : { device: flags.device }),
    ...(flags.cacheDir === undefined ? {} : { cacheDir: flags.cacheDir }),
    log: (line) => say(flags, line),
    progress: (event) => progressLine(flags, event),
  });
  try {
    const s = report.seconds;
    say(
      flags,
      `seconds: ${Object.entries(s)
        .map(([stage, value]) => `${stage.replace(/_/g, ' ')} ${value.toFixed(0)}`)
        .join(', ')}`,
    );
    if (flags.out !== undefined) {
      saveWeights(flags.out, model, {
        arch: String(report.options.arch),
        defense: flags.method,
        target: report.target,
      });
      say(flags, `saved ${flags.out}${report.changed ? '' : ' (unchanged)'}`);
    }
    const reportDir =
      flags.reportDir ?? (flags.out === undefined ? 'mcldef-report' : `${flags.out.replace(WEIGHTS_NAME, '')}-report`);
    const html = await writeReportFiles(reportDir, { report, ...(figure === undefined ? {} : { figure }) });
    say(flags, `report: ${html}`);
    for (const line of report.verdict) say(flags, line);
    writeJson(flags.json, report);
  } finally {
    model.dispose();
  }
}
