// Locates the read-only shared data beside the repository (../shared), for tests that use
// real data. They skip only where the whole folder is absent (a checkout without it); where
// ../shared is present, a missing file is a failure, not a skip.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SHARED = fileURLToPath(new URL('../../../shared/', import.meta.url));

/** The path under ../shared, and node:test's `skip` option: a message only when ../shared is absent. */
export function sharedPath(relative: string): { path: string; skip: string | false } {
  const path = SHARED + relative;
  if (!existsSync(SHARED)) return { path, skip: `${SHARED} is absent (the shared data lives beside the repository)` };
  if (!existsSync(path)) throw new Error(`${path} is missing from ${SHARED}, which this test needs`);
  return { path, skip: false };
}
