// mcldef list: the defenses, attacks, models and dataset kinds this build knows.
import { Command } from 'commander';

import { attackEntries } from '../../attacks/index.js';
import { DATASET_KINDS } from '../../data/load.js';
import { defenseEntries } from '../../defenses/registry.js';
import { modelNames } from '../../nn/models/index.js';
import { runAction, writeJson } from '../common.js';

interface ListFlags {
  json?: string;
}

export function listCommand(): Command {
  return new Command('list')
    .description('the defenses, attacks, models and dataset kinds available')
    .option('--json <file>', "write the lists as JSON to FILE ('-' for stdout)")
    .action((flags: ListFlags) =>
      runAction(() => {
        const defenses = defenseEntries().map((entry) => ({ name: entry.name, summary: entry.summary }));
        const attacks = attackEntries().map((entry) => ({ name: entry.name, summary: entry.summary }));
        const lines = [
          'defenses (mcldef defend --method NAME; its flags: mcldef defend --method NAME --help):',
          ...defenses.map((d) => `  ${d.name.padEnd(16)} ${d.summary}`),
          'attacks (--attack NAME):',
          ...attacks.map((a) => `  ${a.name.padEnd(16)} ${a.summary}`),
          `models (--arch NAME): ${modelNames().join(', ')}`,
          `dataset kinds (--data KIND:PATH): ${DATASET_KINDS.join(', ')}`,
        ];
        const text = lines.join('\n') + '\n';
        if (flags.json === '-') writeJson('-', { defenses, attacks, models: modelNames(), datasets: DATASET_KINDS });
        else {
          process.stdout.write(text);
          writeJson(flags.json, { defenses, attacks, models: modelNames(), datasets: DATASET_KINDS });
        }
      }),
    );
}
