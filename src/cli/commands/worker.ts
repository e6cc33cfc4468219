// mcldef worker: takes grid jobs from a BullMQ queue (mcldef bench run --queue) until stopped.
import { resolve } from 'node:path';

import { Command, Option } from 'commander';

import { startWorker } from '../../bench/queue.js';
import { integer, number, runAction } from '../common.js';

interface WorkerFlags {
  queue: string;
  queueName?: string;
  artifacts: string;
  concurrency: number;
  stallTimeout: number;
  quiet?: boolean;
}

export function workerCommand(): Command {
  return new Command('worker')
    .description(
      'run grid cells from a queue in Redis (mcldef bench run GRID --queue URL) until stopped (Ctrl-C: after the job in hand)',
    )
    .addOption(new Option('--queue <url>', 'the Redis holding the queue (redis://HOST:PORT)').makeOptionMandatory())
    .addOption(new Option('--queue-name <name>', 'the queue (default mcldef-grid)'))
    .addOption(
      new Option('--artifacts <dir>', 'the shared folder where models are trained to and found').makeOptionMandatory(),
    )
    .addOption(
      new Option('--concurrency <n>', 'jobs at once (each uses every core)')
        .default(1)
        .argParser(integer('--concurrency', 1)),
    )
    .addOption(
      new Option(
        '--stall-timeout <s>',
        'seconds after which the job of a worker that stopped answering goes to another',
      )
        .default(30)
        .argParser(number('--stall-timeout', 1)),
    )
    .addOption(new Option('--quiet', 'no job log'))
    .action((flags: WorkerFlags) =>
      runAction(async () => {
        const log = (line: string): void => {
          if (flags.quiet !== true) process.stdout.write(`${line}\n`);
        };
        const worker = startWorker({
          queue: flags.queue,
          ...(flags.queueName === undefined ? {} : { queueName: flags.queueName }),
          artifacts: resolve(flags.artifacts),
          concurrency: flags.concurrency,
          stallTimeout: flags.stallTimeout,
          log,
        });
        worker.on('failed', (job, error) => log(`job ${job?.id ?? '?'} failed: ${error.message}`));
        worker.on('error', (error) => process.stderr.write(`mcldef worker: ${error.message}\n`));
        await worker.waitUntilReady();
        log(`worker ready on ${flags.queue} (artifacts ${resolve(flags.artifacts)})`);
        await new Promise<void>((done) => {
          const stop = (): void => {
            log('stopping after the job in hand');
            void worker.close().then(done);
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
      }),
    );
}
