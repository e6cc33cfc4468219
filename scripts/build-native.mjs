// Builds the libtorch addon with node-gyp (run by `npm ci` as the install script).
// Skips the build when build/Release/mcldef_native.node is newer than every native
// source, unless --force; checks for libtorch first so a missing one gives one clear line.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addon = join(root, 'build/Release/mcldef_native.node');
const force = process.argv.includes('--force');

const check = spawnSync(process.execPath, [join(root, 'native/torch-config.mjs'), 'include'], {
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (check.status !== 0) process.exit(1);

const sources = [
  join(root, 'binding.gyp'),
  ...readdirSync(join(root, 'native')).map((name) => join(root, 'native', name)),
];
const newestSource = Math.max(...sources.map((file) => statSync(file).mtimeMs));
if (!force && existsSync(addon) && statSync(addon).mtimeMs > newestSource) {
  console.log('mcldef: native addon is up to date');
  process.exit(0);
}

// npm tells lifecycle scripts where its bundled node-gyp lives; outside npm, look
// beside npm itself, then on PATH.
const npmBundled = join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
const nodeGyp = process.env.npm_config_node_gyp ?? (existsSync(npmBundled) ? npmBundled : undefined);
const [command, prefix] = nodeGyp ? [process.execPath, [nodeGyp]] : ['node-gyp', []];
// Incremental `build` when the generated Makefile is current; a full `rebuild` otherwise.
const makefile = join(root, 'build/Makefile');
const incremental =
  !force && existsSync(makefile) && statSync(makefile).mtimeMs > statSync(join(root, 'binding.gyp')).mtimeMs;
const args = [...prefix, incremental ? 'build' : 'rebuild', `--jobs=${process.env.JOBS ?? 'max'}`];
if (existsSync('/usr/include/node/node_api.h') && !process.env.npm_config_nodedir) args.push('--nodedir=/usr');
const build = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
if (build.error) {
  console.error(`mcldef: could not run node-gyp (${build.error.message}); install it with: npm install -g node-gyp`);
}
process.exit(build.status ?? 1);
