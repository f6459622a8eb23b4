// A model that fails to load shows an error that says so, with a retry that works. The mock fails on
// request; against `cortex serve` the spec imports a copy of the tiny test model, breaks its config
// (a layer whose tensors are missing), and mends it before pressing Retry.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { api, importTinyModel, IS_MOCK, launch, mock, open, waitReplyDone } from '../lib.mjs';

let b;
let tiny = null;
before(async () => {
  await mock('reset');
  b = await launch();
});
after(async () => {
  await b?.close();
  if (tiny) {
    await api(`/models/${tiny.model.id}`, { method: 'DELETE' }).catch(() => {});
    rmSync(tiny.dir, { recursive: true, force: true });
  }
});

test('model_load_failed: error state with retry', async () => {
  const { page } = b;
  let mend = async () => {};
  if (IS_MOCK) {
    await mock('config', { fail_next: 'model_load_failed' });
  } else {
    tiny = await importTinyModel('e2e-broken-tiny');
    const config = join(tiny.dir, 'config.json');
    const good = readFileSync(config, 'utf8');
    writeFileSync(config, good.replace(/"num_hidden_layers": \d+/, '"num_hidden_layers": 3'));
    mend = async () => writeFileSync(config, good);
  }
  await open(page, '#/chat');
  if (tiny) await page.getByRole('combobox', { name: 'Model' }).selectOption(tiny.model.id);
  const box = page.getByRole('textbox', { name: 'Message', exact: true });
  await box.fill('Hello there');
  await box.press('Enter');
  const alert = page.locator('.reply-error [role=alert]');
  await alert.waitFor({ timeout: 60_000 });
  assert.match(await alert.innerText(), /failed to load/i);
  await mend();
  await alert.getByRole('button', { name: 'Retry' }).click();
  await page.getByRole('button', { name: 'Stop reply' }).waitFor().catch(() => {});
  await waitReplyDone(page);
  await page.locator('article.msg-assistant .md-block').first().waitFor();
  assert.equal(await page.locator('.reply-error').count(), 0);
  assert.equal(await page.locator('article.msg-user').count(), 1, 'the retry did not duplicate the question');
});
