#!/usr/bin/env node
// Entry point of the `mcldef` command: runs the compiled CLI (built by `npm ci` / `npm run build`).
import { existsSync } from 'node:fs';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    'mcldef: the TypeScript sources are not compiled yet; run `npm run build` (npm ci does it too)\n',
  );
  process.exit(1);
}
await import(main.href);
