#!/usr/bin/env node
// Runs the desktop specs in order, one at a time (they share one app's data folder), with the Node
// test runner: the spec reporter on stdout and, with --tap FILE, a TAP copy (run.sh prints its
// `# pass N` / `# fail N` summary). Run through tests/desktop/run.sh, which sets up the window.
//   node tests/desktop/run.mjs [--tap FILE] [spec-name-filter...]
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const argv = process.argv.slice(2);
let tap = null;
const filters = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--tap') tap = argv[++i];
  else filters.push(argv[i]);
}
// DESKTOP_SPECS_DIR runs other specs in the same window set-up (bench/desktop.sh: benchmarks).
const specDir = process.env.DESKTOP_SPECS_DIR ?? join(here, 'specs');
const specs = readdirSync(specDir)
  .filter((f) => f.endsWith('.spec.mjs'))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort()
  .map((f) => join(specDir, f));
if (specs.length === 0) {
  console.error(`no spec matches ${filters.join(' ')}`);
  process.exit(2);
}
const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout'];
if (tap) reporters.push('--test-reporter=tap', `--test-reporter-destination=${tap}`);
const child = spawn(process.execPath, ['--test', '--test-concurrency=1', ...reporters, ...specs], { stdio: 'inherit' });
const stop = (sig) => child.kill(sig);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
const code = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
process.exit(code);
