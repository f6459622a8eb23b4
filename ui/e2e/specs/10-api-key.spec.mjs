// Mock only: the mock server's opt-in API-key mode (like `cortex serve --api-key`). The UI asks for
// the key when the API answers 401, refuses a wrong one in the dialog, and keeps the right one
// (localStorage["cortex.apiKey"]) across reloads; Settings can clear it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { IS_MOCK, launch, mock, open, shot } from '../lib.mjs';

const KEY = 'e2e-secret-key';
let b;
before(async () => {
  if (!IS_MOCK) return;
  await mock('reset');
  await mock('config', { api_key: KEY });
  b = await launch();
});
after(async () => {
  await mock('config', { api_key: null });
  await b?.close();
});

test('API key: prompt, wrong key refused, right key works and persists', { skip: !IS_MOCK && 'mock only (needs the mock server in API-key mode)' }, async () => {
  const { page, errors } = b;
  await open(page, '#/chat');
  const dialog = page.getByRole('dialog', { name: 'This server needs an API key' });
  await dialog.waitFor();
  const field = dialog.getByLabel('API key');
  assert.equal(await field.getAttribute('type'), 'password');
  await shot(page, 'api-key-prompt');

  await field.fill('not-the-key');
  await dialog.getByRole('button', { name: 'Save' }).click();
  const alert = dialog.getByRole('alert');
  await alert.waitFor();
  assert.match(await alert.innerText(), /did not accept/);
  assert.equal(await page.evaluate(() => localStorage.getItem('cortex.apiKey')), null, 'a refused key is not stored');
  await shot(page, 'api-key-refused');

  await field.fill(KEY);
  await Promise.all([page.waitForEvent('load'), dialog.getByRole('button', { name: 'Save' }).click()]);
  await page.locator('.app').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('cortex.apiKey')), KEY);
  // The service works: the model picker is filled from /api/models and the stream connects.
  await page.locator('.conn[data-state="open"]').waitFor({ timeout: 15_000 });
  await page.getByRole('combobox', { name: 'Model' }).locator('option', { hasText: 'SmolLM2' }).waitFor({ state: 'attached' });
  assert.equal(await dialog.count(), 0);

  // ...and after a reload, with no prompt.
  await page.reload();
  await page.locator('.conn[data-state="open"]').waitFor({ timeout: 15_000 });
  await page.waitForTimeout(300);
  assert.equal(await page.getByRole('dialog', { name: 'This server needs an API key' }).count(), 0);

  // Settings: clearing the key brings the prompt back.
  await open(page, '#/settings');
  const clear = page.getByRole('button', { name: 'Clear' });
  await Promise.all([page.waitForEvent('load'), clear.click()]);
  assert.equal(await page.evaluate(() => localStorage.getItem('cortex.apiKey')), null);
  await page.getByRole('dialog', { name: 'This server needs an API key' }).waitFor();
  assert.deepEqual(errors, []);
});
