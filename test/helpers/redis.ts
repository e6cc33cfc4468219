// A redis-server of a test's (or a bench's) own: a free loopback port, no persistence.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';

export const hasRedis = (): boolean => spawnSync('redis-server', ['--version']).status === 0;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface LocalRedis {
  url: string;
  process: ChildProcess;
  /** Stops the server and waits for it to exit. */
  stop: () => Promise<void>;
}

/** Starts redis-server on 127.0.0.1; resolves once it accepts connections. */
export async function startRedis(): Promise<LocalRedis> {
  const port = await freePort();
  const redis = spawn('redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
  ]);
  await new Promise<void>((resolve, reject) => {
    let output = '';
    redis.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('Ready to accept connections')) resolve();
    });
    redis.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${output.slice(-300)}`)));
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    process: redis,
    stop: () =>
      new Promise<void>((resolve) => {
        if (redis.exitCode !== null || redis.signalCode !== null) return resolve();
        redis.once('exit', () => resolve());
        redis.kill('SIGTERM');
      }),
  };
}

/** `mcldef worker` on `queue` as a child process (run from the repository root). */
export function spawnWorker(
  queue: string,
  artifacts: string,
  extra: readonly string[] = [],
  options: { detached?: boolean; stdio?: 'ignore' | 'pipe' } = {},
): ChildProcess {
  return spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--queue', queue, '--artifacts', artifacts, ...extra],
    { detached: options.detached ?? false, stdio: ['ignore', options.stdio ?? 'ignore', options.stdio ?? 'ignore'] },
  );
}
