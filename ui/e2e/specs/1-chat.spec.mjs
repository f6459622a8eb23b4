// Chat: streamed reply, stop mid-reply, regenerate into a branch, flip branches, edit a message,
// reload and find it all again. Asserts behaviour only, so it also runs against `cortex serve`.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, launch, lastAssistant, mock, open, sendAndWait, waitReplyDone } from '../lib.mjs';

/**
 * Waits (up to 10 s) until the branch switcher reads `want` ("i/n"): after a reply the UI
 * re-reads the conversation and re-renders the switcher, so a single read can race it.
 * Fails with the last value seen.
 */
async function branchPos(locator, want) {
  let got = '';
  for (let i = 0; i < 100; i++) {
    got = (await locator.innerText({ timeout: 500 }).catch(() => '')).replace(/\s/g, '');
    if (got === want) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(got, want, 'branch switcher position');
}

let b;
before(async () => {
  await mock('reset');
  b = await launch();
});
after(async () => b?.close());

const text = (loc) => loc.locator('.md').innerText();

test('a first message creates a conversation and the reply streams in', async () => {
  const { page } = b;
  await open(page, '#/chat');
  await page.getByRole('heading', { name: 'What can I help with?' }).waitFor();
  const box = page.getByRole('textbox', { name: 'Message', exact: true });
  await box.fill('Write a palindrome checker');
  await box.press('Shift+Enter'); // a newline, not a send
  assert.equal(await box.inputValue(), 'Write a palindrome checker\n');
  await box.press('Enter');
  // Streaming: the Stop button appears and the text grows in steps.
  await page.getByRole('button', { name: 'Stop reply' }).waitFor();
  await page.locator('article.msg-assistant .md-block').first().waitFor();
  const early = (await text(lastAssistant(page))).length;
  await waitReplyDone(page);
  const final = (await text(lastAssistant(page))).length;
  assert.ok(final > 0 && final >= early, `reply grew from ${early} to ${final} characters`);
  assert.match(page.url(), /#\/chat\/.+/, 'the new conversation is in the URL');
  await page.locator('.msg-stats').last().waitFor();
  assert.match(await page.locator('.conv-item.active').innerText(), /palindrome/i);
});

test('Esc stops a reply mid-way; the partial reply is kept', async () => {
  const { page } = b;
  await mock('config', { delay_ms: 40 });
  const box = page.getByRole('textbox', { name: 'Message', exact: true });
  await box.fill('Write an essay about rivers, with code examples');
  await box.press('Enter');
  await page.getByRole('button', { name: 'Stop reply' }).waitFor();
  await page.waitForFunction(() => (document.querySelector('article.msg-assistant:last-of-type .md')?.textContent ?? '').length > 40, null, {
    timeout: 60_000,
  });
  await page.keyboard.press('Escape');
  await waitReplyDone(page, 5_000);
  // The server saves the partial reply once it notices the closed stream (after its next token);
  // the UI re-reads it then.
  const conv = page.url().split('#/chat/')[1];
  let saved = null;
  for (let i = 0; i < 60 && !saved?.stats; i++) {
    await page.waitForTimeout(250);
    const { messages } = await api(`/conversations/${conv}`);
    saved = messages.filter((m) => m.role === 'assistant').sort((a, b) => a.created_at - b.created_at).at(-1);
  }
  assert.equal(saved?.stats?.finish_reason, 'cancelled', 'the stopped reply is saved as cancelled');
  assert.ok(saved.content.length > 0, 'the partial reply is saved');
  await page.waitForTimeout(1_200);
  const stopped = await text(lastAssistant(page));
  await page.waitForTimeout(800);
  assert.equal(await text(lastAssistant(page)), stopped, 'nothing more arrives after stopping');
  assert.ok(stopped.length > 0);
  await mock('config', { delay_ms: 18 });
});

test('regenerate adds a sibling; the i / n switcher flips between them', async () => {
  const { page } = b;
  const first = await text(lastAssistant(page));
  await lastAssistant(page).getByRole('button', { name: 'Regenerate reply' }).click();
  await page.getByRole('button', { name: 'Stop reply' }).waitFor().catch(() => {});
  await waitReplyDone(page);
  const versions = lastAssistant(page).locator('.branch-pos');
  await branchPos(versions, '2/2');
  const second = await text(lastAssistant(page));
  await lastAssistant(page).getByRole('button', { name: 'Previous version' }).click();
  await branchPos(versions, '1/2');
  assert.equal(await text(lastAssistant(page)), first);
  await lastAssistant(page).getByRole('button', { name: 'Next version' }).click();
  await branchPos(versions, '2/2');
  assert.equal(await text(lastAssistant(page)), second);
});

test('editing a user message creates a sibling branch, and a reload restores everything', async () => {
  const { page } = b;
  const firstUser = page.locator('article.msg-user').first();
  const original = await firstUser.locator('.msg-bubble').innerText();
  await firstUser.hover();
  await firstUser.getByRole('button', { name: 'Edit message' }).click();
  const editor = page.getByRole('textbox', { name: 'Edit message' });
  await editor.fill('Write a palindrome checker in Rust');
  await page.getByRole('button', { name: 'Save & send' }).click();
  await page.getByRole('button', { name: 'Stop reply' }).waitFor().catch(() => {});
  await waitReplyDone(page);
  const user = page.locator('article.msg-user').first();
  assert.equal(await user.locator('.msg-bubble').innerText(), 'Write a palindrome checker in Rust');
  await branchPos(user.locator('.branch-pos'), '2/2');
  const editedReply = await text(lastAssistant(page));

  await page.reload();
  await page.locator('article.msg-user').first().waitFor();
  const again = page.locator('article.msg-user').first();
  assert.equal(await again.locator('.msg-bubble').innerText(), 'Write a palindrome checker in Rust');
  await branchPos(again.locator('.branch-pos'), '2/2');
  assert.equal(await text(lastAssistant(page)), editedReply);

  // The older branch, with its regenerated replies and the stopped one, is still there.
  await again.getByRole('button', { name: 'Previous version' }).click();
  assert.equal(await page.locator('article.msg-user').first().locator('.msg-bubble').innerText(), original);
  assert.ok((await page.locator('article.msg-assistant').count()) >= 2);
  await page.reload();
  await page.locator('article.msg-user').first().waitFor();
  assert.equal(await page.locator('article.msg-user').first().locator('.msg-bubble').innerText(), original, 'the chosen branch is saved');
});

test('conversations can be searched, renamed and deleted', async () => {
  const { page } = b;
  await page.getByRole('button', { name: 'New chat' }).click();
  await page.getByRole('heading', { name: 'What can I help with?' }).waitFor();
  await sendAndWait(page, 'One more question about otters');
  assert.equal(await page.locator('.conv-item').count(), 2);
  const search = page.getByRole('searchbox', { name: 'Search conversations' });
  await search.fill('zzz-no-such-chat');
  await page.getByText('No chats match').waitFor();
  await search.fill('otters');
  await page.waitForFunction(() => document.querySelectorAll('.conv-item').length === 1);
  assert.match(await page.locator('.conv-item').innerText(), /otters/);
  await search.fill('');
  await page.waitForFunction(() => document.querySelectorAll('.conv-item').length > 1);
  const item = page.locator('.conv-item').first();
  await item.hover();
  await item.getByRole('button', { name: /^Rename/ }).click();
  const input = page.getByRole('textbox', { name: 'New title' });
  await input.fill('Palindromes');
  await input.press('Enter');
  await page.locator('.conv-item', { hasText: 'Palindromes' }).waitFor();
  await page.locator('.chat-title', { hasText: 'Palindromes' }).waitFor();
  await page.reload();
  await page.locator('.conv-item', { hasText: 'Palindromes' }).waitFor();
  const count = await page.locator('.conv-item').count();
  const row = page.locator('.conv-item', { hasText: 'Palindromes' });
  await row.hover();
  await row.getByRole('button', { name: /^Delete/ }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await page.waitForFunction((n) => document.querySelectorAll('.conv-item').length === n - 1, count);
});
