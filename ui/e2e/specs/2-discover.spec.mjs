// Discover: search, open a model page (card, files, memory verdict), download with visible progress.
// Against `cortex serve` (tests/e2e/run.sh) it downloads test-org/tiny-chat from the local test hub:
// a hub stall keeps the download mid-way, the server is restarted (E2E_RESTART_FILE) and the
// download resumes and completes; then the downloaded model answers in a chat.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { api, IS_MOCK, launch, lastAssistant, mock, open, sendAndWait } from '../lib.mjs';

const HUB = process.env.E2E_HUB_URL?.replace(/\/$/, '');
const RESTART = process.env.E2E_RESTART_FILE;
const QUERY = process.env.E2E_SEARCH ?? (IS_MOCK ? 'qwen' : 'tiny-chat');
let downloadedId = null;

async function hub(path, init) {
  const r = await fetch(`${HUB}${path}`, { headers: { 'Content-Type': 'application/json' }, ...init });
  return r.json();
}

/** Restarts `cortex serve` through the harness and waits until the new one answers. */
async function restartServer() {
  writeFileSync(RESTART, 'restart');
  const t0 = Date.now();
  while (existsSync(RESTART)) {
    if (Date.now() - t0 > 60_000) throw new Error('the server did not restart within 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }
}
let b;
before(async () => {
  await mock('reset');
  await mock('config', { download_speed: 250_000_000 });
  b = await launch();
});
after(async () => b?.close());

test('search, open a model page, and download it with visible progress', async () => {
  const { page } = b;
  await open(page, '#/discover');
  await page.getByRole('searchbox', { name: 'Search Hugging Face models' }).fill(QUERY);
  const first = page.locator('a.result', { hasText: new RegExp(QUERY, 'i') }).first();
  await first.waitFor();
  const name = await first.locator('.result-name').innerText();
  await first.click();
  await page.locator('.model-head h1', { hasText: name }).waitFor();
  await page.getByRole('region', { name: 'Model card' }).waitFor();
  assert.ok((await page.locator('.file-list li').count()) > 0, 'files are listed');

  // The memory verdict follows the context length.
  await page.getByLabel('Context length').selectOption('32768');
  await page.locator('.verdict .badge').waitFor();
  assert.match(await page.locator('.verdict .badge').innerText(), /Fits|Tight|Too big/);

  const variants = page.locator('.variant');
  if ((await variants.count()) > 1) await variants.first().click();
  if (!IS_MOCK) {
    // Hold the weights' bytes (on the hub's CDN, after the redirect) mid-way so the progress can be seen (and the server restarted under it).
    await hub('/_faults', { method: 'DELETE' });
    await hub('/_log', { method: 'DELETE' });
    await hub('/_faults', {
      method: 'POST',
      body: JSON.stringify({ path_glob: '/cdn/*/model.safetensors', kind: 'stall', bytes: 300_000, seconds: 120, times: 1 }),
    });
  }
  await page.getByRole('button', { name: /^Download/ }).click();
  const bar = page.getByRole('progressbar', { name: /Download of/ });
  await bar.waitFor({ timeout: 30_000 });

  await page.getByRole('link', { name: 'Downloads', exact: true }).click();
  const row = page.locator('li.dl').first();
  await row.waitFor();
  if (IS_MOCK) {
    // A partial progress shows, with speed and time left, and only moves forward.
    await page.waitForFunction(() => {
      const v = Number(document.querySelector('li.dl [role=progressbar]')?.getAttribute('aria-valuenow'));
      return v > 0 && v < 100;
    });
    assert.match(await row.locator('.dl-meta').innerText(), /MB\/s · .* left/);
    const progress = async () => {
      const bar = row.getByRole('progressbar');
      return (await bar.count()) ? Number(await bar.getAttribute('aria-valuenow')) : 100;
    };
    const v1 = await progress();
    await page.waitForTimeout(600);
    const v2 = await progress();
    assert.ok(v2 >= v1, `progress ${v1} -> ${v2}`);
    await row.getByRole('button', { name: 'Chat with it' }).waitFor({ timeout: 30_000 });
    await page.getByRole('link', { name: 'Library', exact: true }).click();
    await page.locator('.model-name', { hasText: name.replace(/-GGUF$/, '') }).first().waitFor();
  } else {
    // Mid-way: the stalled weights show a partial progress.
    await page.waitForFunction(() => {
      const v = Number(document.querySelector('li.dl [role=progressbar]')?.getAttribute('aria-valuenow'));
      return v > 0 && v < 100;
    }, null, { timeout: 30_000 });
    const mid = Number(await row.getByRole('progressbar').getAttribute('aria-valuenow'));
    assert.match(await row.innerText(), /Downloading/);

    // Restart the server under the download: it resumes by itself and completes.
    await restartServer();
    await row.getByRole('button', { name: 'Chat with it' }).waitFor({ timeout: 60_000 });
    assert.match(await row.innerText(), /Completed/);
    const weights = (await hub('/_log')).filter((x) => x.path.startsWith('/cdn/') && x.path.endsWith('/model.safetensors') && x.method === 'GET');
    // (The hub logs a request when it ends: the stalled one, cut by the restart, is not listed.)
    assert.ok(weights.length >= 1, 'the weights were requested again after the restart');
    assert.match(weights.at(-1).range ?? '', /^bytes=[1-9]\d*-/, `the download resumed from where it stopped (progress was ${mid}%)`);

    const { downloads } = await api('/downloads');
    downloadedId = downloads.find((d) => d.repo === 'test-org/tiny-chat' && d.state === 'completed')?.model_id;
    assert.ok(downloadedId, 'the completed download is registered in the library');
    await page.getByRole('link', { name: 'Library', exact: true }).click();
    await page.locator('.model-name', { hasText: 'tiny-chat' }).first().waitFor();
  }
});

test('chat with the downloaded model: the reply streams and finishes', { skip: IS_MOCK && 'real server only (the mock download has no model behind it)' }, async () => {
  const { page } = b;
  assert.ok(downloadedId, 'the download test ran first');
  // Random weights rarely emit end-of-sequence: cap the reply as a user would in the Library.
  await api(`/models/${downloadedId}`, { method: 'PATCH', body: JSON.stringify({ settings: { max_tokens: 64 } }) });
  await open(page, '#/downloads');
  await page.locator('li.dl', { hasText: 'test-org/tiny-chat' }).getByRole('button', { name: 'Chat with it' }).click();
  await page.getByRole('heading', { name: 'What can I help with?' }).waitFor();
  assert.equal(await page.getByRole('combobox', { name: 'Model' }).inputValue(), downloadedId);
  await sendAndWait(page, 'Hello, tiny model');
  await page.locator('.msg-stats').last().waitFor();
  assert.ok((await lastAssistant(page).locator('.md').innerText()).length > 0, 'the reply has text');
  const conv = page.url().split('#/chat/')[1];
  const { messages } = await api(`/conversations/${conv}`);
  const reply = messages.find((m) => m.role === 'assistant');
  assert.equal(reply.model_id, downloadedId, 'the downloaded model answered');
  assert.match(reply.stats.finish_reason, /stop|length/);
  assert.ok(reply.stats.completion_tokens > 0);
});

// Against `cortex serve`: the test hub's test-org/gated-chat (gated, no token set).
const GATED = IS_MOCK ? 'meta-llama/Llama-3.2-1B-Instruct' : 'test-org/gated-chat';

test('a gated model that is refused says what to do, with buttons that go there', async () => {
  const { page } = b;
  await open(page, `#/discover/model/${GATED}`);
  await page.getByText('This model is gated').waitFor();
  await page.getByRole('button', { name: /^Download/ }).click();
  await page.getByRole('link', { name: 'Downloads', exact: true }).click();
  const row = page.locator('li.dl', { hasText: GATED });
  await row.getByRole('alert').waitFor({ timeout: 15_000 });
  assert.match(await row.getByRole('alert').innerText(), /Accept the license/);
  await row.getByRole('link', { name: 'Add a token in Settings' }).click();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  await page.goBack();
  await page
    .locator('li.dl', { hasText: GATED })
    .getByRole('link', { name: 'Open model page' })
    .click();
  await page.getByText('This model is gated').waitFor();
});
