// Locates the read-only shared data beside the repository (../shared), for tests that
// use real data; they skip with a clear message where it is absent.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SHARED = fileURLToPath(new URL('../../../shared/', import.meta.url));

/** The path under ../shared, or a skip message for node:test's `skip` option. */
export function sharedPath(relative: string): { path: string; skip: string | false } {
  const path = SHARED + relative;
  return { path, skip: existsSync(path) ? false : `${path} is absent (the shared data lives beside the repository)` };
}
