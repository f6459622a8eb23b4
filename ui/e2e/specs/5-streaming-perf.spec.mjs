// While a long reply streams: report the longest main-thread task (PerformanceObserver 'longtask';
// reported, never failed on), and check that finished messages keep their DOM (only the live
// message re-renders).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, mock, open, sendAndWait, waitReplyDone } from '../lib.mjs';

let b;
before(async () => {
  await mock('reset');
  await mock('config', { delay_ms: 4 });
  b = await launch();
  await b.page.addInitScript(() => {
    window.__longTasks = [];
    try {
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) window.__longTasks.push({ start: e.startTime, duration: e.duration });
      }).observe({ type: 'longtask', buffered: true });
    } catch {
      /* not supported */
    }
  });
});
after(async () => {
  await mock('config', { delay_ms: 18 });
  await b?.close();
});

test('streaming a long reply: longest task reported, finished messages untouched', async (t) => {
  const { page } = b;
  await open(page, '#/chat');
  await sendAndWait(page, 'Say hello');
  // Tag the finished messages' DOM nodes; they must survive the next reply untouched.
  await page.evaluate(() => document.querySelectorAll('article.msg .md-block, article.msg .msg-bubble').forEach((el) => (el.__kept = true)));
  const tagged = await page.evaluate(() => document.querySelectorAll('article.msg .md-block, article.msg .msg-bubble').length);

  await page.evaluate(() => (window.__longTasks = []));
  const box = page.getByRole('textbox', { name: 'Message', exact: true });
  await box.fill('Write a long answer with many sections');
  const t0 = Date.now();
  await box.press('Enter');
  await page.getByRole('button', { name: 'Stop reply' }).waitFor();
  await waitReplyDone(page, 180_000);
  const seconds = (Date.now() - t0) / 1000;

  const kept = await page.evaluate(
    (n) => [...document.querySelectorAll('article.msg .md-block, article.msg .msg-bubble')].slice(0, n).filter((el) => el.__kept).length,
    tagged,
  );
  assert.equal(kept, tagged, 'earlier messages kept their DOM nodes');

  const supported = await page.evaluate(() => PerformanceObserver.supportedEntryTypes.includes('longtask'));
  assert.ok(supported, 'longtask entries are observable');
  const tasks = await page.evaluate(() => window.__longTasks);
  const longest = tasks.reduce((m, x) => Math.max(m, x.duration), 0);
  const chars = (await page.locator('article.msg-assistant').last().innerText()).length;
  const line = `long tasks while streaming ${chars} chars in ${seconds.toFixed(1)} s: ${tasks.length} over 50 ms, longest ${Math.round(longest)} ms`;
  t.diagnostic(line);
  console.log(`# ${line}`);
});
