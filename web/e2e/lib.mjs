// Shared helpers of the dashboard's end-to-end scenarios. Each scenario is a
// plain Node ES module (`node web/e2e/<name>.mjs`) configured by environment
// variables; it exits 0 on success, non-zero with a precise message on
// failure, and saves a full-page screenshot to $ARGOSY_SCREENSHOT_DIR/<name>.png.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A required (or defaulted) environment variable. */
export function env(name, fallback) {
  const value = process.env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback !== undefined) return fallback;
  throw new Error(`environment variable ${name} is not set`);
}

export class ScenarioError extends Error {}

export function fail(message) {
  throw new ScenarioError(message);
}

export function assert(condition, message) {
  if (!condition) fail(message);
}

/** Base URL without a trailing slash. */
export function baseUrl() {
  return env('ARGOSY_URL').replace(/\/+$/, '');
}

/**
 * Polls `probe` until it returns a truthy value (returned), or fails with
 * `message` (a string or a function of the last value) after `timeoutMs`.
 */
export async function waitUntil(probe, { timeoutMs = 15_000, intervalMs = 250, message = 'condition not met' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      const text = typeof message === 'function' ? message(last) : message;
      fail(`${text} (after ${timeoutMs} ms)`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The trimmed text of the first element matching `selector`, or null. */
export async function textOf(page, selector) {
  const el = await page.$(selector);
  if (!el) return null;
  return ((await el.textContent()) ?? '').trim();
}

export async function attrOf(page, selector, name) {
  const el = await page.$(selector);
  return el ? el.getAttribute(name) : null;
}

export const tid = (id, extra = '') => `[data-testid="${id}"]${extra}`;

/** Escapes a value for use inside a CSS attribute selector. */
export function cssValue(value) {
  return String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"');
}

/** Opens a page of the dashboard by hash (`#/services`). */
export async function open(page, hash) {
  await page.goto(`${baseUrl()}/${hash}`, { waitUntil: 'domcontentloaded' });
}

/** Signs in through the login form and waits for the shell. */
export async function login(page, user, password, hash = '#/overview') {
  await open(page, hash);
  await page.waitForSelector(tid('login-username'), { timeout: 20_000 });
  await page.fill(tid('login-username'), user);
  await page.fill(tid('login-password'), password);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/v1/session') && r.request().method() === 'POST', { timeout: 20_000 }),
    page.click(tid('login-submit')),
  ]);
  if (response.status() !== 200) {
    let body = '';
    try {
      body = await response.text();
    } catch {
      // ignore
    }
    fail(`signing in as ${user} answered ${response.status()}: ${body}`);
  }
  await page.waitForSelector(tid('whoami'), { timeout: 20_000 });
}

/** The CSRF token of the page's session (GET /api/v1/session from the page). */
export async function csrfToken(page) {
  return page.evaluate(async () => {
    const r = await fetch('/api/v1/session', { credentials: 'same-origin' });
    if (!r.ok) throw new Error(`GET /api/v1/session answered ${r.status}`);
    return (await r.json()).csrf_token;
  });
}

async function screenshot(page, name, log) {
  if (!page) return;
  const dir = env('ARGOSY_SCREENSHOT_DIR', '.');
  try {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, `${name}.png`);
    await page.screenshot({ path, fullPage: true, timeout: 15_000 });
    log(`screenshot: ${path}`);
  } catch (error) {
    log(`screenshot failed: ${error.message}`);
  }
}

/**
 * Runs a scenario: launches Chromium, gives `fn` a page, screenshots at the
 * end (and on failure) and exits with the outcome. Uncaught page errors and
 * Content-Security-Policy violations fail the scenario.
 */
export async function scenario(name, fn) {
  const log = (...args) => console.log(`[${name}]`, ...args);
  const overall = Number(env('ARGOSY_SCENARIO_TIMEOUT_MS', '600000'));
  let browser;
  let page;
  const pageErrors = [];
  const timer = setTimeout(() => {
    console.error(`FAIL ${name}: the scenario took longer than ${overall} ms`);
    process.exit(2);
  }, overall);
  timer.unref();
  try {
    browser = await chromium.launch({
      executablePath: process.env.ARGOSY_CHROMIUM || '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.setDefaultTimeout(20_000);
    page.on('pageerror', (error) => pageErrors.push(`uncaught error in the page: ${error.message}`));
    page.on('console', (msg) => {
      const text = msg.text();
      if (msg.type() === 'error' && /Content Security Policy|Refused to (execute|load|apply|connect)/i.test(text)) {
        pageErrors.push(`CSP violation: ${text}`);
      }
      if (process.env.ARGOSY_E2E_VERBOSE) log(`console.${msg.type()}: ${text}`);
    });
    await fn({ page, context, browser, log });
    if (pageErrors.length) fail(pageErrors.join('\n'));
    await screenshot(page, name, log);
    log('ok');
    await browser.close();
    clearTimeout(timer);
    process.exit(0);
  } catch (error) {
    const message = error instanceof ScenarioError ? error.message : error?.stack || String(error);
    console.error(`FAIL ${name}: ${message}`);
    if (pageErrors.length && !(error instanceof ScenarioError && message.includes(pageErrors[0]))) {
      console.error(pageErrors.join('\n'));
    }
    if (page) console.error(`page URL: ${page.url()}`);
    await screenshot(page, name, log);
    try {
      await browser?.close();
    } catch {
      // ignore
    }
    process.exit(1);
  }
}
