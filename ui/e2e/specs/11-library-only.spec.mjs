// Mock only: a library-only server (an exposed `cortex serve --library-only`) refuses downloads,
// imports, conversions and settings changes, so the UI offers none of them and says why where
// people look for them: the Library header, a model's Download panel, Settings. Chat still works.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { IS_MOCK, launch, mock, open, sendAndWait, shot } from '../lib.mjs';

let b;
before(async () => {
  if (!IS_MOCK) return;
  await mock('reset');
  await mock('config', { library_only: true });
  b = await launch();
});
after(async () => {
  await mock('config', { library_only: false });
  await b?.close();
});

test('library-only: no Import, Convert or Download, and a line that says why', { skip: !IS_MOCK && 'mock only (needs the mock server in library-only mode)' }, async () => {
  const { page, errors } = b;
  await open(page, '#/library');
  await page.locator('.model-row').first().waitFor();
  const hint = page.locator('.library-only-hint');
  await hint.waitFor();
  assert.match(await hint.innerText(), /serves its library only/);
  assert.equal(await page.getByRole('button', { name: 'Import' }).count(), 0, 'no Import');
  assert.equal(await page.getByRole('button', { name: /^Convert / }).count(), 0, 'no Convert');
  assert.ok((await page.getByRole('button', { name: 'Chat', exact: true }).count()) > 0, 'models can still be chatted with');
  await shot(page, 'library-only-library');

  await open(page, '#/discover/model/bartowski/Qwen2.5-0.5B-Instruct-GGUF');
  await page.locator('.variant').first().waitFor();
  const panel = page.getByRole('complementary').or(page.locator('.model-side'));
  await panel.getByRole('status').filter({ hasText: 'serves its library only' }).waitFor();
  assert.equal(await page.getByRole('button', { name: /^Download / }).count(), 0, 'no Download button');
  await shot(page, 'library-only-model');

  await open(page, '#/settings');
  await page.getByRole('status').filter({ hasText: 'This server serves its library only' }).waitFor();

  await open(page, '#/chat');
  await sendAndWait(page, 'Hello there');
  assert.deepEqual(errors, []);
});

test('library-only: the mock refuses what the server refuses', { skip: !IS_MOCK && 'mock only' }, async () => {
  const { page } = b;
  const status = await page.evaluate(async () => {
    const post = (path, body) =>
      fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.status);
    return {
      download: await post('/api/downloads', { repo: 'x/y' }),
      convert: await post('/api/convert', { model_id: 'mdl_x', bits: 4 }),
      system: await fetch('/api/system').then((r) => r.json()).then((s) => s.library_only),
    };
  });
  assert.deepEqual(status, { download: 403, convert: 403, system: true });
});
