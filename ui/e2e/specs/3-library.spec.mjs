// Library: delete a model (confirm), then see the space freed. Against a real server this deletes
// files, so it runs there only with E2E_ALLOW_DELETE=1 (and deletes the most recently added model).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { IS_MOCK, launch, mock, open } from '../lib.mjs';

let b;
before(async () => {
  await mock('reset');
  b = await launch();
});
after(async () => b?.close());

const allowed = IS_MOCK || process.env.E2E_ALLOW_DELETE === '1';

test('deleting a model asks first and then shows the space freed', { skip: !allowed && 'set E2E_ALLOW_DELETE=1' }, async () => {
  const { page } = b;
  await open(page, '#/library');
  await page.locator('.model-row').first().waitFor();
  const before = await page.locator('.model-row').count();
  const target = page.locator('.model-row').last();
  const name = await target.locator('.model-name').innerText();
  await target.getByRole('button', { name: `Delete ${name}` }).click();
  const dialog = page.getByRole('dialog', { name: 'Delete this model?' });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Delete' }).click();
  const toast = page.locator('.toast', { hasText: 'Freed' });
  await toast.waitFor();
  assert.match(await toast.innerText(), new RegExp(`Deleted ${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\. Freed [\\d.,]+ (B|KB|MB|GB|TB)`));
  await page.waitForFunction((n) => document.querySelectorAll('.model-row').length === n - 1, before);
});

test('convert shows an estimate first, then progress, then "Chat with it"', { skip: !IS_MOCK && 'mock-only (converting takes minutes on a real model)' }, async () => {
  const { page } = b;
  await open(page, '#/library');
  const row = page.locator('.model-row').first();
  await row.waitFor();
  const name = await row.locator('.model-name').innerText();
  await row.getByRole('button', { name: `Convert ${name}` }).click();
  const dialog = page.getByRole('dialog', { name: `Convert ${name}` });
  await dialog.locator('.estimate strong', { hasText: /\d/ }).waitFor();
  await dialog.getByLabel('Quantization').selectOption('8');
  await dialog.locator('.estimate strong', { hasText: /\d/ }).waitFor();
  await dialog.getByRole('button', { name: 'Convert' }).click();
  await dialog.getByRole('button', { name: 'Chat with it' }).waitFor({ timeout: 30_000 });
  await dialog.getByRole('button', { name: 'Chat with it' }).click();
  await page.getByRole('heading', { name: 'What can I help with?' }).waitFor();
  assert.match(await page.getByRole('combobox', { name: 'Model' }).inputValue(), /.+/);
});
