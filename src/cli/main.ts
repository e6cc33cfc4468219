#!/usr/bin/env node
// The `mcldef` command (SPEC §6).
import { runCli } from './program.js';

await runCli(process.argv);
