// Shared helpers of the desktop specs: a webdriverio session on tauri-driver (which starts the app
// binary through WebKitWebDriver), screenshots, polling, and reads of the window's DOM.
// tests/desktop/run.sh sets the environment: DESKTOP_BIN, DESKTOP_DRIVER_PORT, DESKTOP_HUB_URL,
// DESKTOP_SHOTS (and the app's own CORTEX_HOME, HF_ENDPOINT, ... which tauri-driver passes on).
import { mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Key, remote } from 'webdriverio';

export { Key };
export const BIN = process.env.DESKTOP_BIN;
export const PORT = Number(process.env.DESKTOP_DRIVER_PORT ?? 4444);
export const HUB = process.env.DESKTOP_HUB_URL?.replace(/\/$/, '');
export const SHOTS = process.env.DESKTOP_SHOTS ?? '/tmp/cortex-desktop-shots';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Pids of running processes whose executable is the app binary (this machine's /proc). */
export function appPids() {
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const exe = readlinkSync(`/proc/${d}/exe`).replace(/ \(deleted\)$/, '');
      if (exe === BIN) out.push(Number(d));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** `root` and all its descendants (this machine's /proc). */
export function familyOf(root) {
  const parent = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(f.slice(f.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  const out = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, pp] of parent) if (out.has(pp) && !out.has(pid)) (out.add(pid), (grew = true));
  }
  return [...out];
}

/** A process's name (/proc/PID/comm, at most 15 characters), or its pid once it is gone. */
export function processName(pid) {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return String(pid);
  }
}

/** Waits until no app process is left (the app allows one instance: a new start would hand over to it). */
export async function waitAppGone(timeout = 30_000) {
  const t0 = Date.now();
  while (appPids().length) {
    if (Date.now() - t0 > timeout) throw new Error(`the app still runs ${timeout / 1000} s after its session ended (pids ${appPids().join(', ')})`);
    await sleep(100);
  }
}

/**
 * Starts the app (a new WebDriver session: tauri-driver -> WebKitWebDriver -> the binary) and waits
 * until the UI has rendered. WebdriverIO 9 asks for WebDriver BiDi by default; tauri-driver only
 * proxies classic WebDriver, so the session is classic.
 */
export async function startApp() {
  if (!BIN) throw new Error('DESKTOP_BIN is not set: run the specs through tests/desktop/run.sh');
  await waitAppGone();
  const browser = await remote({
    hostname: '127.0.0.1',
    port: PORT,
    logLevel: process.env.WDIO_LOG_LEVEL ?? 'warn',
    connectionRetryTimeout: 180_000,
    connectionRetryCount: 0,
    capabilities: {
      'tauri:options': { application: BIN },
      'wdio:enforceWebDriverClassic': true,
    },
  });
  await browser.setTimeout({ script: 60_000, pageLoad: 60_000 });
  await waitFor(browser, () => !!document.querySelector('.app main'), { timeout: 60_000, what: 'the app UI to render' });
  return browser;
}

/** Ends the session: WebKitWebDriver closes the app's window and the app quits. Waits until it has. */
export async function quitApp(browser) {
  await browser.deleteSession();
  await waitAppGone();
}

/**
 * Polls `fn` (run in the window, with `args`) every `interval` ms until it returns a truthy value,
 * which it returns. Fails after `timeout` with `what` and the last value.
 */
export async function waitFor(browser, fn, { args = [], timeout = 30_000, interval = 100, what = 'a condition' } = {}) {
  const t0 = Date.now();
  let last;
  let lastError;
  for (;;) {
    try {
      last = await browser.execute(fn, ...args);
      lastError = undefined;
      if (last) return last;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() - t0 > timeout) {
      // What the window showed then, to tell a slow app from a broken one.
      const seen = await browser
        .execute(() => `${location.hash || '(no hash)'}: ${(document.querySelector('.app')?.innerText ?? document.body?.innerText ?? '').replace(/\s+/g, ' ').slice(0, 400)}`)
        .catch((e) => `(could not read the window: ${e.message})`);
      throw new Error(
        `timed out after ${timeout / 1000} s waiting for ${what} (last: ${JSON.stringify(last)}${lastError ? `, error: ${lastError.message}` : ''}); the window showed ${seen}`,
      );
    }
    await sleep(interval);
  }
}

export async function shot(browser, name) {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, `${name}.png`);
  // let the window paint what the DOM already shows (two frames) before the snapshot
  await browser.executeAsync((done) => requestAnimationFrame(() => requestAnimationFrame(() => done())));
  // Without accelerated compositing (the app's mode on a machine with no GPU, as here:
  // src-tauri/src/rendering.rs) WebKit answers a snapshot only after its next paint, and an idle
  // page paints nothing, so the snapshot would wait for the page's next change (55 s once).
  // A 1-pixel, nearly transparent square flickers for 3 s to give it those paints.
  await browser.execute(() => {
    const dot = document.createElement('div');
    dot.style.cssText = 'position:fixed;left:0;top:0;width:1px;height:1px;pointer-events:none;opacity:0.004';
    document.body.append(dot);
    let n = 0;
    const timer = setInterval(() => {
      dot.style.background = n++ % 2 ? '#000' : '#fff';
      if (n > 60) (clearInterval(timer), dot.remove());
    }, 50);
  });
  await browser.saveScreenshot(path);
  return path;
}

/**
 * Calls an app command through the window's own IPC (window.__TAURI_INTERNALS__, what the UI's
 * @tauri-apps/api uses). Resolves to {ok: true, value} or {ok: false, reason} (the rejection as a
 * string, or its JSON when it is an object), never throws for a rejected command. (Not a field
 * named `error`: webdriverio takes a script result with one for a WebDriver error.)
 */
export async function invoke(browser, cmd, args = {}) {
  return browser.execute(async (cmd, args) => {
    try {
      const value = await window.__TAURI_INTERNALS__.invoke(cmd, args);
      return { ok: true, value: value ?? null };
    } catch (e) {
      return { ok: false, reason: typeof e === 'string' ? e : e instanceof Error ? e.message : JSON.stringify(e) };
    }
  }, cmd, args);
}

/** Goes to a screen through the sidebar, as a user clicks it. */
export async function nav(browser, screen) {
  await browser.$(`nav.sidebar a.nav-link[href="#/${screen}"]`).click();
  await waitFor(browser, (s) => location.hash.startsWith(`#/${s}`) && !document.querySelector('.screen-loading'), {
    args: [screen],
    what: `the ${screen} screen`,
  });
}

/** Types into the chat box and presses Enter; waits until the reply starts (Stop shows) or is done. */
export async function send(browser, text) {
  const box = await browser.$('textarea[aria-label="Message"]');
  await box.waitForEnabled({ timeout: 10_000 });
  await box.setValue(text);
  await waitFor(browser, (t) => document.querySelector('textarea[aria-label="Message"]')?.value === t, { args: [text], what: 'the typed message' });
  const before = await browser.execute(() => document.querySelectorAll('article.msg-user').length);
  await box.addValue(Key.Enter);
  await waitFor(browser, (n) => document.querySelectorAll('article.msg-user').length > n, { args: [before], what: 'the message to be sent' });
}

/** Waits until no reply streams (the Send button is back and Stop is gone). */
export async function waitReplyDone(browser, timeout = 180_000) {
  await waitFor(browser, () => !document.querySelector('button[aria-label="Stop reply"]') && !!document.querySelector('button[aria-label="Send message"]'), {
    timeout,
    interval: 200,
    what: 'the reply to finish',
  });
}

/** The text of the last assistant message (its Markdown body), '' when none. */
export const lastReply = (browser) => browser.execute(() => [...document.querySelectorAll('article.msg-assistant .md')].at(-1)?.textContent ?? '');

/** The conversation id in the window's URL (#/chat/ID), or null. */
export const currentConversation = (browser) => browser.execute(() => location.hash.match(/^#\/chat\/([^/?]+)/)?.[1] ?? null);

/**
 * Waits (up to 90 s: the first start imports it) until the default model is in the library and
 * gives it short, greedy replies: the specs test the app, not the model's prose (a user can set
 * the same per-model defaults in the Library; tests/e2e/run.sh does the same over HTTP).
 * Returns its id.
 */
export async function prepareDefaultModel(browser) {
  const t0 = Date.now();
  let sys;
  for (;;) {
    sys = await invoke(browser, 'get_system');
    if (sys.ok && /^mdl_/.test(sys.value.default_model_id ?? '')) break;
    if (Date.now() - t0 > 90_000) throw new Error(`the default model is not in the library after 90 s (get_system: ${JSON.stringify(sys)})`);
    await sleep(250);
  }
  const id = sys.value.default_model_id;
  const upd = await invoke(browser, 'update_model', { id, update: { settings: { max_tokens: 200, temperature: 0 } } });
  if (!upd.ok) throw new Error(`update_model: ${upd.reason}`);
  return id;
}
