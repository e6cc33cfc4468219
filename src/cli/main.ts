#!/usr/bin/env node
// The `mcldef` command (SPEC §6).
import { Command } from 'commander';

import { defendCommand, detectCommand } from './commands/defend.js';
import { demoCommand } from './commands/demo.js';
import { evalCommand } from './commands/eval.js';
import { trainCommand } from './commands/train.js';

const program = new Command('mcldef')
  .description('find and remove backdoors from image classifiers (MCLDef, ACM MM 2023) on libtorch')
  .showHelpAfterError()
  .configureHelp({ showGlobalOptions: true });
program.addCommand(trainCommand());
program.addCommand(evalCommand());
program.addCommand(detectCommand());
program.addCommand(defendCommand());
program.addCommand(demoCommand());
await program.parseAsync(process.argv);
