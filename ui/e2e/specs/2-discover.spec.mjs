// Discover: search, open a model page (card, files, memory verdict), download with visible progress.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { IS_MOCK, launch, mock, open } from '../lib.mjs';

const QUERY = process.env.E2E_SEARCH ?? 'qwen';
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
    await page.waitForFunction(() => {
      const el = document.querySelector('li.dl');
      return !!el && /Downloading|Verifying|Completed|Queued|Retrying/.test(el.textContent ?? '');
    });
  }
});

test('a gated model that is refused says what to do, with buttons that go there', { skip: !IS_MOCK && 'mock-only' }, async () => {
  const { page } = b;
  await open(page, '#/discover/model/meta-llama/Llama-3.2-1B-Instruct');
  await page.getByText('This model is gated').waitFor();
  await page.getByRole('button', { name: /^Download/ }).click();
  await page.getByRole('link', { name: 'Downloads', exact: true }).click();
  const row = page.locator('li.dl', { hasText: 'meta-llama/Llama-3.2-1B-Instruct' });
  await row.getByRole('alert').waitFor({ timeout: 15_000 });
  assert.match(await row.getByRole('alert').innerText(), /Accept the license/);
  await row.getByRole('link', { name: 'Add a token in Settings' }).click();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  await page.goBack();
  await page
    .locator('li.dl', { hasText: 'meta-llama/Llama-3.2-1B-Instruct' })
    .getByRole('link', { name: 'Open model page' })
    .click();
  await page.getByText('This model is gated').waitFor();
});
