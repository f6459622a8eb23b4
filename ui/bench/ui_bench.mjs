#!/usr/bin/env node
// UI benchmarks: figures, not tests (nothing here fails on timing).
//   node ui/bench/ui_bench.mjs                         # starts the mock server (like e2e/run.mjs), serving ui/dist
//   BENCH_BASE_URL=http://127.0.0.1:8080 node ui/bench/ui_bench.mjs   # a running `cortex serve` (b needs the mock: skipped)
// Options (env): BENCH_LOADS (5), BENCH_MESSAGES (1000), BENCH_TOKENS (2000), BENCH_TOKEN_DELAY_MS (0 = full speed),
// CHROMIUM_PATH (/usr/bin/chromium). Build first (`npm run build`).
//
// a. Page load: navigation start (performance.timeOrigin) until the message textarea is visible and
//    enabled, polled every animation frame + on DOM mutations by an init script; one warm-up load,
//    then the median of BENCH_LOADS loads in fresh tabs of one browser (HTTP cache and server warm).
// b. Streaming BENCH_TOKENS tokens into a conversation of BENCH_MESSAGES messages (seeded with the
//    mock's POST /__mock/seed; the mock streams exactly that many tokens, reply_tokens):
//    - long tasks: PerformanceObserver('longtask') entries between pressing Enter and the reply's end;
//    - wall time: Enter until the Send button is back (the `done` event was handled);
//    - render cost per token: renderer main-thread busy time over the stream divided by tokens. Busy
//      time is the delta of Chromium's own cumulative `TaskDuration` counter (CDP Performance.getMetrics,
//      every task on the page's main thread: script, style, layout, paint, GC), so it counts short
//      tasks too, which long-task sums would miss. `ScriptDuration` and `LayoutDuration` +
//      `RecalcStyleDuration` are split out. It includes the SSE parsing and network callbacks, i.e.
//      everything the page does per token, not just DOM updates.
// c. Bundle: scripts/size.mjs's gzip totals (first screen vs all).
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ui = fileURLToPath(new URL('..', import.meta.url));
const env = process.env;
const LOADS = Number(env.BENCH_LOADS ?? 5);
const MESSAGES = Number(env.BENCH_MESSAGES ?? 1000);
const TOKENS = Number(env.BENCH_TOKENS ?? 2000);
const DELAY = Number(env.BENCH_TOKEN_DELAY_MS ?? 0);

let server = null;
let base = env.BENCH_BASE_URL?.replace(/\/$/, '');
const isMock = !base;
if (isMock) {
  if (!existsSync(join(ui, 'dist', 'index.html'))) {
    console.error('ui/dist is missing: run `npm run build` first (or set BENCH_BASE_URL).');
    process.exit(2);
  }
  server = spawn(process.execPath, [join(ui, 'e2e', 'mock-server.mjs'), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  base = await new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    server.on('exit', (code) => reject(new Error(`mock server exited (${code})`)));
  });
}
const mock = async (path, body = {}) =>
  (await fetch(`${base}/__mock/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })).json();

const dir = mkdtempSync(join(tmpdir(), 'cortex-bench-'));
const context = await chromium.launchPersistentContext(dir, {
  executablePath: env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
});

// Records when the composer first becomes usable, and every long task.
await context.addInitScript(() => {
  const w = window;
  w.__longTasks = [];
  try {
    new PerformanceObserver((l) => l.getEntries().forEach((e) => w.__longTasks.push({ start: e.startTime, duration: e.duration }))).observe({ type: 'longtask', buffered: true });
  } catch {
    /* unsupported */
  }
  const check = () => {
    if (w.__usableAt) return;
    const t = document.querySelector('textarea[aria-label="Message"]');
    if (t && !t.disabled && t.getClientRects().length > 0 && getComputedStyle(t).visibility !== 'hidden') {
      w.__usableAt = performance.now();
      mo.disconnect();
    } else requestAnimationFrame(check);
  };
  const mo = new MutationObserver(check);
  document.addEventListener('DOMContentLoaded', () => mo.observe(document.documentElement, { childList: true, subtree: true, attributes: true }));
  requestAnimationFrame(check);
});

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const rows = [];

try {
  // ---- a. page load ----
  if (isMock) await mock('reset');
  const loads = [];
  for (let i = 0; i <= LOADS; i++) {
    const page = await context.newPage();
    await page.goto(`${base}/#/chat`);
    await page.waitForFunction(() => window.__usableAt, null, { timeout: 30_000 });
    const t = await page.evaluate(() => window.__usableAt);
    if (i > 0) loads.push(t); // the first load warms the server and the HTTP cache
    await page.close();
  }
  rows.push(['a. load to usable chat box, median', `${median(loads).toFixed(0)} ms`, `${LOADS} loads: ${loads.map((x) => x.toFixed(0)).join(', ')} ms`]);

  // ---- b. streaming into a long conversation ----
  if (!isMock) {
    rows.push(['b. streaming', 'n/a', 'needs the mock server (seeding, reply_tokens)']);
  } else {
    await mock('reset');
    const { conversation_id: id } = await mock('seed', { messages: MESSAGES });
    await mock('config', { reply_tokens: TOKENS, delay_ms: DELAY });
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const metrics = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    const tOpen = Date.now();
    await page.goto(`${base}/#/chat/${id}`);
    // the list renders the last 40 messages ("Show earlier" for the rest): wait for the last one
    await page.locator('article.msg').last().waitFor({ state: 'visible', timeout: 120_000 });
    const openMs = Date.now() - tOpen;
    const box = page.getByRole('textbox', { name: 'Message', exact: true });
    await box.fill('Write a long answer');
    await page.waitForTimeout(500);
    await page.evaluate(() => (window.__longTasks = []));
    const m0 = await metrics();
    const t0 = await page.evaluate(() => performance.now());
    await box.press('Enter');
    await page.getByRole('button', { name: 'Stop reply' }).waitFor({ timeout: 30_000 }).catch(() => {});
    await page.getByRole('button', { name: 'Send message' }).waitFor({ timeout: 300_000 });
    const t1 = await page.evaluate(() => performance.now());
    const m1 = await metrics();
    const tasks = await page.evaluate(() => window.__longTasks);
    const msgs = await page.locator('article.msg').count();
    const d = (k) => (m1[k] - m0[k]) * 1000; // seconds -> ms
    const busy = d('TaskDuration');
    const longest = tasks.reduce((m, x) => Math.max(m, x.duration), 0);
    const over50 = tasks.filter((x) => x.duration > 50).length;
    rows.push([`b. open the ${MESSAGES}-message conversation`, `${openMs} ms`, `${msgs} messages in the DOM after the reply`]);
    rows.push(['b. streaming wall time', `${(t1 - t0).toFixed(0)} ms`, `${TOKENS} tokens, mock delay ${DELAY} ms/token, ${((TOKENS / (t1 - t0)) * 1000).toFixed(0)} tok/s`]);
    rows.push(['b. longest long task', `${longest.toFixed(0)} ms`, `sum of long tasks ${tasks.reduce((s, x) => s + x.duration, 0).toFixed(0)} ms`]);
    rows.push(['b. long tasks over 50 ms', String(over50), '']);
    rows.push(['b. main-thread busy while streaming', `${busy.toFixed(0)} ms`, `${((busy / (t1 - t0)) * 100).toFixed(0)}% of wall; script ${d('ScriptDuration').toFixed(0)} ms, style+layout ${(d('RecalcStyleDuration') + d('LayoutDuration')).toFixed(0)} ms`]);
    rows.push(['b. render cost per token', `${(busy / TOKENS).toFixed(3)} ms`, 'main-thread TaskDuration delta / tokens']);
    await page.close();
    await mock('config', { reply_tokens: null, delay_ms: 18 });
  }

  // ---- c. bundle ----
  if (existsSync(join(ui, 'dist', 'index.html'))) {
    const out = execFileSync(process.execPath, [join(ui, 'scripts', 'size.mjs')], { encoding: 'utf8' });
    const m = out.match(/first screen ([\d.]+ KB).*total ([\d.]+ KB)/);
    rows.push(['c. bundle gzip: first screen', m?.[1] ?? '?', 'budget 300 KB (scripts/size.mjs)']);
    rows.push(['c. bundle gzip: total', m?.[2] ?? '?', '']);
  } else rows.push(['c. bundle', 'n/a', 'ui/dist missing']);
} finally {
  await context.close();
  rmSync(dir, { recursive: true, force: true });
  server?.kill('SIGTERM');
}

const w0 = Math.max(...rows.map((r) => r[0].length));
const w1 = Math.max(...rows.map((r) => r[1].length));
console.log(`\nUI benchmarks against ${isMock ? 'the mock server' : base} (Chromium headless, ${new Date().toISOString()})`);
console.log(`${'metric'.padEnd(w0)}  ${'value'.padStart(w1)}  notes`);
console.log(`${'-'.repeat(w0)}  ${'-'.repeat(w1)}  -----`);
for (const [a, b, c] of rows) console.log(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`);
