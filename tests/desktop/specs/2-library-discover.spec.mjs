// Library and Discover in the window: the default model in the Library, then a search of the local
// test hub (HF_ENDPOINT, tests/e2e/make_hub.py's repos), the model page of test-org/tiny-chat (the
// model tests/e2e's real-server spec downloads) and its download with visible progress, held
// mid-way by a hub stall so the progress can be seen, until it is in the Library.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { HUB, nav, quitApp, shot, startApp, waitFor } from '../lib.mjs';

const REPO = 'test-org/tiny-chat';
let browser;

async function hub(path, init = {}) {
  const r = await fetch(`${HUB}${path}`, { headers: { 'Content-Type': 'application/json' }, ...init });
  assert.ok(r.ok, `test hub ${init.method ?? 'GET'} ${path}: ${r.status}`);
  return r.json();
}

before(async () => {
  assert.ok(HUB, 'DESKTOP_HUB_URL is set (run through tests/desktop/run.sh)');
  browser = await startApp();
});
after(async () => {
  if (browser) await quitApp(browser).catch(() => {});
});

test('the Library lists the default model', { timeout: 60_000 }, async () => {
  await nav(browser, 'library');
  const names = await waitFor(
    browser,
    () => {
      const names = [...document.querySelectorAll('.model-row .model-name')].map((e) => e.textContent);
      return names.includes('SmolLM2-135M-Instruct') ? names : null;
    },
    { what: 'SmolLM2-135M-Instruct in the Library' },
  );
  assert.ok(!names.some((n) => /tiny-chat/.test(n)), 'nothing downloaded yet');
  await shot(browser, '07-library');
});

test('Discover: search the hub, open a model page, download it with visible progress', { timeout: 180_000 }, async () => {
  // Hold the weights (on the hub's CDN, after the redirect) mid-way for a few seconds, so the
  // partial progress is on screen long enough to be seen; the download then goes on by itself.
  await hub('/_faults', { method: 'DELETE' });
  await hub('/_log', { method: 'DELETE' });
  await hub('/_faults', {
    method: 'POST',
    body: JSON.stringify({ path_glob: '/cdn/*/model.safetensors', kind: 'stall', bytes: 300_000, seconds: 8, times: 1 }),
  });

  await nav(browser, 'discover');
  const search = await browser.$('input[aria-label="Search Hugging Face models"]');
  await search.waitForDisplayed();
  await search.setValue('tiny-chat');
  await waitFor(browser, (repo) => [...document.querySelectorAll('a.result')].some((a) => a.textContent.includes(repo.split('/')[1])), {
    args: [REPO],
    timeout: 30_000,
    what: 'tiny-chat in the search results',
  });
  const results = await browser.execute(() => [...document.querySelectorAll('a.result .result-name')].map((e) => e.textContent));
  assert.ok(results.includes('tiny-chat'), `results: ${results.join(', ')}`);
  await shot(browser, '08-discover-search');

  // The model page: card, files, memory verdict.
  await browser.$("//a[contains(concat(' ', @class, ' '), ' result ') and .//*[contains(@class, 'result-name') and normalize-space(.)='tiny-chat']]").click();
  await waitFor(
    browser,
    () =>
      /tiny-chat/.test(document.querySelector('.model-head h1')?.textContent ?? '') &&
      !!document.querySelector('section[aria-label="Model card"]') &&
      document.querySelectorAll('.file-list li').length > 0 &&
      !!document.querySelector('.verdict .badge'),
    { timeout: 30_000, what: 'the model page with its card, files and memory verdict' },
  );
  await shot(browser, '09-model-page');

  const download = await browser.$("//button[contains(concat(' ', @class, ' '), ' btn-primary ') and starts-with(normalize-space(.), 'Download')]");
  await download.waitForEnabled({ timeout: 10_000 });
  await download.click();
  await waitFor(browser, (repo) => !!document.querySelector(`[role=progressbar][aria-label="Download of ${repo}"]`), {
    args: [REPO],
    timeout: 30_000,
    what: 'the download progress on the model page',
  });

  // Downloads: a partial progress, with bytes, speed and time left.
  await nav(browser, 'downloads');
  const mid = await waitFor(
    browser,
    (repo) => {
      const row = [...document.querySelectorAll('li.dl')].find((li) => li.querySelector('.dl-repo')?.textContent === repo);
      const v = Number(row?.querySelector('[role=progressbar]')?.getAttribute('aria-valuenow'));
      return v > 0 && v < 100 ? { value: v, meta: row.querySelector('.dl-meta')?.textContent ?? '', state: row.dataset.state } : null;
    },
    { args: [REPO], timeout: 30_000, interval: 50, what: 'a partial download progress (between 0 and 100 %)' },
  );
  assert.match(mid.meta, /of/, `the row shows bytes done of total (${mid.meta})`);
  await shot(browser, '10-download-progress');

  // It completes (after the stall) and offers a chat with the new model.
  const done = await waitFor(
    browser,
    (repo) => {
      const row = [...document.querySelectorAll('li.dl')].find((li) => li.querySelector('.dl-repo')?.textContent === repo);
      const chat = [...(row?.querySelectorAll('button') ?? [])].some((b) => b.textContent.trim() === 'Chat with it');
      return row?.dataset.state === 'completed' && chat ? { text: row.innerText } : null;
    },
    { args: [REPO], timeout: 90_000, interval: 200, what: 'the download to complete' },
  );
  assert.match(done.text, /Completed/);
  await shot(browser, '11-download-done');

  // The hub served the weights (held mid-way by the stall).
  const weights = (await hub('/_log')).filter((x) => x.path.startsWith('/cdn/') && x.path.endsWith('/model.safetensors') && x.method === 'GET');
  assert.ok(weights.some((x) => x.fault === 'stall'), 'the weights went through the stall');

  await nav(browser, 'library');
  await waitFor(browser, () => [...document.querySelectorAll('.model-row .model-name')].some((e) => /tiny-chat/.test(e.textContent)), {
    what: 'tiny-chat in the Library',
  });
  await shot(browser, '12-library-after-download');
});

test('Settings: the local API server starts on a chosen port and answers', { timeout: 120_000 }, async () => {
  const port = await new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  await nav(browser, 'settings');
  const input = await browser.$('#api-port');
  await input.waitForExist({ timeout: 20_000 });
  await input.setValue(String(port));
  await browser.$('#api-port ~ button[type="submit"]').click();
  // Save greys out once the saved port equals the typed one
  await waitFor(browser, (p) => document.querySelector('#api-port')?.value === String(p) && document.querySelector('#api-port ~ button[type="submit"]')?.disabled === true, {
    args: [port],
    what: 'the port saved',
  });
  await browser.$('input[role="switch"]').click();
  const url = await waitFor(browser, () => document.querySelector('input[aria-label="Server address"]')?.value ?? null, { what: 'the server address' });
  assert.equal(url, `http://127.0.0.1:${port}/v1`);
  const health = await fetch(`http://127.0.0.1:${port}/health`);
  assert.equal(health.status, 200);
  await shot(browser, '12b-settings-api-server');
  await browser.$('input[role="switch"]').click();
  await waitFor(browser, () => !document.querySelector('input[aria-label="Server address"]'), { what: 'the server stopped' });
  await assert.rejects(fetch(`http://127.0.0.1:${port}/health`));
});
