#!/usr/bin/env node
// Runs the E2E specs with the Node test runner. Against E2E_BASE_URL when set (e.g. a running
// `cortex serve`); otherwise it starts the mock server on a free port, serving ui/dist (build first),
// and the mock-only specs run too.
//   node e2e/run.mjs [spec-name-filter...]
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const filters = process.argv.slice(2);
const specs = readdirSync(join(here, 'specs'))
  .filter((f) => f.endsWith('.spec.mjs'))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort()
  .map((f) => join(here, 'specs', f));

const env = { ...process.env };
let server = null;

if (!env.E2E_BASE_URL) {
  if (!existsSync(join(here, '..', 'dist', 'index.html'))) {
    console.error('ui/dist is missing: run `npm run build` first (or set E2E_BASE_URL).');
    process.exit(2);
  }
  server = spawn(process.execPath, [join(here, 'mock-server.mjs'), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    server.on('exit', (code) => reject(new Error(`mock server exited (${code})`)));
  });
  env.E2E_BASE_URL = url;
  env.E2E_MOCK = '1';
  console.log(`E2E against the mock server at ${url}`);
} else {
  console.log(`E2E against ${env.E2E_BASE_URL}`);
}

const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...specs], { stdio: 'inherit', env });
const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
server?.kill('SIGTERM');
process.exit(code);
