// Mock-only: a model that fails to load shows an error that says so, with a retry that works.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { IS_MOCK, launch, mock, open, waitReplyDone } from '../lib.mjs';

let b;
before(async () => {
  if (!IS_MOCK) return;
  await mock('reset');
  b = await launch();
});
after(async () => b?.close());

test('model_load_failed: error state with retry', { skip: !IS_MOCK && 'mock-only' }, async () => {
  const { page } = b;
  await mock('config', { fail_next: 'model_load_failed' });
  await open(page, '#/chat');
  const box = page.getByRole('textbox', { name: 'Message', exact: true });
  await box.fill('Hello there');
  await box.press('Enter');
  const alert = page.locator('.reply-error [role=alert]');
  await alert.waitFor();
  assert.match(await alert.innerText(), /failed to load/i);
  await alert.getByRole('button', { name: 'Retry' }).click();
  await page.getByRole('button', { name: 'Stop reply' }).waitFor().catch(() => {});
  await waitReplyDone(page);
  await page.locator('article.msg-assistant .md-block').first().waitFor();
  assert.equal(await page.locator('.reply-error').count(), 0);
  assert.equal(await page.locator('article.msg-user').count(), 1, 'the retry did not duplicate the question');
});
