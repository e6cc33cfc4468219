// The `mcldef` program (SPEC §6), built per invocation: the defend command carries the flags
// of the defense that --method (or the config file's `method`) names.
import { Command } from 'commander';

import '../defenses/index.js';
import { applyConfig, checkRequired, readConfig } from './config.js';
import { benchCommand } from './commands/bench.js';
import { defendCommand } from './commands/defend.js';
import { demoCommand } from './commands/demo.js';
import { detectCommand } from './commands/detect.js';
import { evalCommand } from './commands/eval.js';
import { listCommand } from './commands/list.js';
import { trainCommand } from './commands/train.js';
import { workerCommand } from './commands/worker.js';
import { runAction } from './common.js';

/** The value of `--name VALUE` or `--name=VALUE` in argv, if present. */
function flagValue(argv: readonly string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === name) return argv[i + 1];
    if (arg.startsWith(`${name}=`)) return arg.slice(name.length + 1);
  }
  return undefined;
}

/** The defense `defend` will run: --method, else the config file's `method`, else mcldef. */
function methodOf(argv: readonly string[]): string {
  const given = flagValue(argv, '--method');
  if (given !== undefined) return given;
  const config = flagValue(argv, '--config');
  if (config !== undefined) {
    try {
      const method = readConfig(config).method;
      if (typeof method === 'string') return method;
    } catch {
      // The config's own error is reported when the command runs.
    }
  }
  return 'mcldef';
}

export function buildProgram(argv: readonly string[]): Command {
  const program = new Command('mcldef')
    .description('find and remove backdoors from image classifiers (MCLDef, ACM MM 2023) on libtorch')
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true });
  program.addCommand(trainCommand());
  program.addCommand(evalCommand());
  program.addCommand(detectCommand());
  program.addCommand(defendCommand(methodOf(argv)));
  program.addCommand(listCommand());
  program.addCommand(demoCommand());
  program.addCommand(benchCommand());
  program.addCommand(workerCommand());
  // Config files fill in what the command line left out; required options are checked after.
  program.hook('preAction', (_program, command) => {
    const config = command.getOptionValue('config') as string | undefined;
    if (config !== undefined) applyConfig(command, config);
    checkRequired(command);
  });
  return program;
}

/** Runs the CLI on argv (node, script, args...). */
export async function runCli(argv: readonly string[]): Promise<void> {
  await runAction(() =>
    buildProgram(argv)
      .parseAsync([...argv])
      .then(() => undefined),
  );
}
