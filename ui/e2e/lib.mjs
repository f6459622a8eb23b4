// Shared helpers of the E2E specs: Debian's Chromium through playwright-core, a fresh profile per
// browser, and (against the mock server only) its reset/config controls.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const BASE_URL = (process.env.E2E_BASE_URL ?? 'http://127.0.0.1:8787').replace(/\/$/, '');
/** Set by run.mjs when it started the mock server itself: mock-only specs run only then. */
export const IS_MOCK = process.env.E2E_MOCK === '1';
export const SHOTS = new URL('./screenshots/', import.meta.url).pathname;

const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A browser with a fresh --user-data-dir (removed on close). */
export async function launch({ width = 1280, height = 800, colorScheme = 'light' } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'cortex-e2e-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ARGS,
    viewport: { width, height },
    colorScheme,
    reducedMotion: 'reduce',
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const dialogs = [];
  const errors = [];
  page.on('dialog', (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    void d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => errors.push(e.message));
  return {
    context,
    page,
    dialogs,
    errors,
    async close() {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function mock(path, body = {}) {
  if (!IS_MOCK) return null;
  const r = await fetch(`${BASE_URL}/__mock/${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return r.json();
}

export async function api(path, init = {}) {
  const r = await fetch(`${BASE_URL}/api${path}`, {
    ...init,
    headers: { 'Content-Type': 'application/json', ...(init.headers ?? {}) },
  });
  return r.json();
}

export async function open(page, hash = '#/chat') {
  await page.goto(`${BASE_URL}/${hash}`);
  await page.locator('.app').waitFor();
}

/** Sends a chat message through the composer and waits until the reply has finished streaming. */
export async function sendAndWait(page, text, timeout = 120_000) {
  const box = page.getByRole('textbox', { name: 'Message', exact: true });
  await box.fill(text);
  await box.press('Enter');
  await page.getByRole('button', { name: 'Stop reply' }).waitFor({ timeout: 10_000 }).catch(() => {});
  await waitReplyDone(page, timeout);
}

export async function waitReplyDone(page, timeout = 120_000) {
  await page.getByRole('button', { name: 'Send message' }).waitFor({ timeout });
}

export async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

export const lastAssistant = (page) => page.locator('article.msg-assistant').last();

/**
 * Real server only (tests/e2e/run.sh runs it on this machine): imports a copy of the tiny random-weight
 * llama of tests/fixtures/generated as a folder model, so a spec can break and mend its files. Returns
 * {model, dir}. Its replies are gibberish but fast; max_tokens caps them.
 */
export async function importTinyModel(name, settings = { max_tokens: 16 }) {
  const { cpSync } = await import('node:fs');
  const fixture = new URL('../../tests/fixtures/generated/tiny-llama/', import.meta.url).pathname;
  const dir = mkdtempSync(join(tmpdir(), 'cortex-e2e-model-'));
  cpSync(fixture, dir, { recursive: true });
  const model = await api('/models/import', { method: 'POST', body: JSON.stringify({ path: dir, name }) });
  if (!model.id) throw new Error(`import failed: ${JSON.stringify(model)}`);
  await api(`/models/${model.id}`, { method: 'PATCH', body: JSON.stringify({ settings }) });
  return { model, dir };
}

const HUB = process.env.E2E_HUB_URL?.replace(/\/$/, '');
const TINY = 'test-org/tiny-chat';

/** The library model downloaded from test-org/tiny-chat (downloads it first when missing). */
export async function ensureTinyChat() {
  const find = async () => (await api('/models')).models.find((m) => m.source?.kind === 'hub' && m.source.repo === TINY);
  let model = await find();
  if (model) return model;
  if (HUB) await fetch(`${HUB}/_faults`, { method: 'DELETE' });
  const dl = await api('/downloads', { method: 'POST', body: JSON.stringify({ repo: TINY }) });
  for (let i = 0; i < 300 && !model; i++) {
    await new Promise((r) => setTimeout(r, 200));
    const d = (await api('/downloads')).downloads.find((x) => x.id === dl.id);
    if (d?.state === 'failed') throw new Error(`download of ${TINY} failed: ${d.error?.message}`);
    model = await find();
  }
  if (!model) throw new Error(`${TINY} was not downloaded`);
  return model;
}

