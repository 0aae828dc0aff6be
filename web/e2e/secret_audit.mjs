// Sets a secret from the page, sees it listed at version 1, finds the
// secret.set entry in the audit log filtered by action; the value never
// appears on the page.
// Env: ARGOSY_URL, ARGOSY_USER, ARGOSY_PASSWORD, ARGOSY_SECRET_NAME.
import { randomBytes } from 'node:crypto';
import { assert, cssValue, env, login, open, scenario, textOf, tid, waitUntil } from './lib.mjs';

await scenario('secret_audit', async ({ page, log }) => {
  const name = env('ARGOSY_SECRET_NAME');
  const value = `e2e-secret-${randomBytes(12).toString('hex')}`;
  const n = cssValue(name);
  const leaks = async (where) => {
    const text = await page.evaluate(() => document.body.innerText);
    const html = await page.content();
    assert(!text.includes(value) && !html.includes(value), `the secret value appears on the ${where} page`);
  };

  await login(page, env('ARGOSY_USER'), env('ARGOSY_PASSWORD'));
  await open(page, '#/secrets');
  await page.waitForSelector(tid('secret-submit'));
  await page.fill(tid('secret-name'), name);
  await page.fill(tid('secret-value'), value);
  const [set] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/secrets' && r.request().method() === 'POST'),
    page.click(tid('secret-submit')),
  ]);
  assert(set.status() === 200, `setting ${name} answered ${set.status()}: ${await set.text()}`);
  const row = `${tid('secret-row')}[data-name="${n}"]`;
  await page.waitForSelector(row, { timeout: 15_000 });
  const version = await textOf(page, `${row} ${tid('secret-version')}`);
  assert(version === 'v1', `${name} is listed at ${version}, expected v1`);
  assert((await page.inputValue(tid('secret-value'))) === '', 'the value stays in the form after saving');
  await leaks('secrets');
  log(`${name} listed at ${version}`);

  await open(page, '#/audit?action=secret.set');
  const entry = `${tid('audit-row')}[data-action="secret.set"][data-target*="${n}"]`;
  await waitUntil(async () => page.$(entry), { timeoutMs: 15_000, message: async () => `no secret.set entry for ${name} in the audit log (${(await page.$$(tid('audit-row'))).length} rows shown)` });
  const actions = await page.$$eval(tid('audit-row'), (rows) => rows.map((r) => r.getAttribute('data-action')));
  assert(actions.every((a) => a === 'secret.set'), `the action filter let other actions through: ${[...new Set(actions)].join(', ')}`);
  await leaks('audit');
  log(`audit entry found: ${await textOf(page, entry)}`);
});
