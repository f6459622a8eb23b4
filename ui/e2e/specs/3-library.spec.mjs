// Library: convert a model (estimate, progress, "Chat with it"), then delete a model (confirm) and
// see the space freed. Against `cortex serve` both act on test-org/tiny-chat, downloaded from the
// local test hub by these tests (never the default model, nor any other real model).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, ensureTinyChat as tinyChat, IS_MOCK, launch, mock, open } from '../lib.mjs';

let b;
before(async () => {
  await mock('reset');
  b = await launch();
});
after(async () => b?.close());

const rowNamed = (page, name) => page.locator('.model-row').filter({ has: page.locator('.model-name', { hasText: new RegExp(`^${name}$`) }) });

test('convert shows an estimate first, then progress, then "Chat with it"', async () => {
  const { page } = b;
  const source = IS_MOCK ? null : await tinyChat();
  await open(page, '#/library');
  // Only safetensors models offer Convert (an MLX model is converted already).
  const row = source ? rowNamed(page, source.name) : page.locator('.model-row').filter({ has: page.getByRole('button', { name: /^Convert / }) }).first();
  await row.waitFor();
  const name = await row.locator('.model-name').innerText();
  await row.getByRole('button', { name: `Convert ${name}` }).click();
  const dialog = page.getByRole('dialog', { name: `Convert ${name}` });
  await dialog.locator('.estimate strong', { hasText: /\d/ }).waitFor();
  // The mock converts to 8-bit; the real tiny float32 model to 4-bit (the dialog's default).
  await dialog.getByLabel('Quantization').selectOption(IS_MOCK ? '8' : '4');
  await dialog.locator('.estimate strong', { hasText: /\d/ }).waitFor();
  await dialog.getByRole('button', { name: 'Convert' }).click();
  await dialog.locator('.convert-progress').waitFor();
  await dialog.getByRole('button', { name: 'Chat with it' }).waitFor({ timeout: 60_000 });
  assert.match(await dialog.locator('.done-line').innerText(), /is ready \([\d.,]+ (B|KB|MB|GB)\)/);
  await dialog.getByRole('button', { name: 'Chat with it' }).click();
  await page.getByRole('heading', { name: 'What can I help with?' }).waitFor();
  const picked = await page.getByRole('combobox', { name: 'Model' }).inputValue();
  assert.match(picked, /.+/);
  if (IS_MOCK) return;
  {
    const { conversions } = await api('/conversions');
    const done = conversions.find((c) => c.model_id === source.id && c.state === 'completed' && c.bits === 4);
    assert.ok(done?.result_model_id, 'the conversion completed');
    assert.equal(picked, done.result_model_id, 'the new chat uses the converted model');
    const converted = await api(`/models/${done.result_model_id}`);
    assert.deepEqual(converted.quantization?.bits, 4);
    await open(page, '#/library');
    await rowNamed(page, converted.name).waitFor();
    // An MLX model (converted, or the default model) offers no Convert.
    assert.equal(await rowNamed(page, converted.name).getByRole('button', { name: /^Convert / }).count(), 0);
  }
});

test('deleting a model asks first and then shows the space freed', async () => {
  const { page } = b;
  // Never the default model: on a real server only the model these tests downloaded.
  const target = IS_MOCK ? null : await tinyChat();
  await open(page, '#/library');
  await page.locator('.model-row').first().waitFor();
  const before = await page.locator('.model-row').count();
  const row = target ? rowNamed(page, target.name) : page.locator('.model-row').last();
  const name = await row.locator('.model-name').innerText();
  await row.getByRole('button', { name: `Delete ${name}` }).click();
  const dialog = page.getByRole('dialog', { name: 'Delete this model?' });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Delete' }).click();
  const toast = page.locator('.toast', { hasText: 'Freed' });
  await toast.waitFor({ timeout: 30_000 });
  assert.match(await toast.innerText(), new RegExp(`Deleted ${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\. Freed [\\d.,]+ (B|KB|MB|GB|TB)`));
  await page.waitForFunction((n) => document.querySelectorAll('.model-row').length === n - 1, before);
  if (target) {
    assert.doesNotMatch(await toast.innerText(), /Freed 0 B/, 'the files were removed');
    const { models } = await api('/models');
    assert.ok(!models.some((m) => m.id === target.id), 'the model is gone from the library');
    const { default_model_id } = await api('/system');
    assert.ok(models.some((m) => m.id === default_model_id), 'the default model is still there');
  }
});
