// The build's libtorch discovery: a missing libtorch gives one clear message.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

import { libtorchVersion } from '../../src/index.js';

test('torch-config names the apt package or the bad LIBTORCH path when libtorch is missing', () => {
  const result = spawnSync(process.execPath, ['native/torch-config.mjs', 'include'], {
    env: { ...process.env, LIBTORCH: '/nonexistent/libtorch' },
    encoding: 'utf8',
  });
  assert.equal(result.status, 1);
  assert.match(result.stderr, /LIBTORCH=\/nonexistent\/libtorch has no include\/ATen\/ATen\.h/);
  const libs = spawnSync(process.execPath, ['native/torch-config.mjs', 'libs'], { encoding: 'utf8' });
  assert.match(libs.stdout, /-ltorch -ltorch_cpu -lc10/);
});

test('the addon reports the libtorch version it was built against', () => {
  assert.match(libtorchVersion(), /^\d+\.\d+\.\d+/);
});
