// A wrong password shows the server's error; the right one shows the
// overview with at least ARGOSY_EXPECT_HOSTS host rows; every page of the
// navigation fits a 1024 px wide window.
// Env: ARGOSY_URL, ARGOSY_USER, ARGOSY_PASSWORD, ARGOSY_EXPECT_HOSTS (default 1).
import { assert, env, fail, open, scenario, textOf, tid, waitUntil } from './lib.mjs';

await scenario('login', async ({ page, log }) => {
  const user = env('ARGOSY_USER');
  const password = env('ARGOSY_PASSWORD');
  const expectHosts = Number(env('ARGOSY_EXPECT_HOSTS', '1'));

  await open(page, '#/overview');
  await page.waitForSelector(tid('login-username'), { timeout: 20_000 });

  // Wrong password: the form shows the server's message verbatim.
  await page.fill(tid('login-username'), user);
  await page.fill(tid('login-password'), `${password}-wrong`);
  const [wrong] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/v1/session') && r.request().method() === 'POST'),
    page.click(tid('login-submit')),
  ]);
  assert(wrong.status() === 401, `a wrong password answered ${wrong.status()}, expected 401`);
  let serverMessage = '';
  try {
    serverMessage = (await wrong.json()).error ?? '';
  } catch {
    fail('the 401 answer to a wrong password is not JSON {"error": "..."}');
  }
  assert(serverMessage, 'the 401 answer carries no "error" message');
  await page.waitForSelector(`${tid('login-error')}:not([hidden])`);
  const shown = await textOf(page, tid('login-error'));
  assert(shown === serverMessage, `the login form shows ${JSON.stringify(shown)}, the server said ${JSON.stringify(serverMessage)}`);
  assert(!(await page.$(tid('whoami'))), 'a wrong password signed in');
  log(`wrong password refused: ${shown}`);

  // Right password: the overview with the hosts.
  await page.fill(tid('login-password'), password);
  const [right] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/v1/session') && r.request().method() === 'POST'),
    page.click(tid('login-submit')),
  ]);
  assert(right.status() === 200, `the right password answered ${right.status()}: ${await right.text()}`);
  await page.waitForSelector(tid('whoami'));
  await page.waitForSelector(tid('nav-overview', '[aria-current="page"]'));
  const rows = await waitUntil(async () => {
    const n = (await page.$$(tid('host-row'))).length;
    return n >= expectHosts ? n : 0;
  }, {
    timeoutMs: 30_000,
    message: async () => `expected at least ${expectHosts} host rows, found ${(await page.$$(tid('host-row'))).length}`,
  });
  log(`overview shows ${rows} host row(s)`);

  // The session survives a reload (GET /api/v1/session with the cookie).
  await page.reload({ waitUntil: 'domcontentloaded' });
  await page.waitForSelector(tid('host-row'), { timeout: 20_000 });
  assert(!(await page.$(tid('login-username'))), 'a reload went back to the login page');

  // Usable from 1024 px wide: no page of the navigation scrolls sideways.
  await page.setViewportSize({ width: 1024, height: 768 });
  const pages = await page.$$eval('nav a[data-testid^="nav-"]', (links) =>
    links.map((a) => a.getAttribute('href')),
  );
  assert(pages.length >= 8, `the navigation shows ${pages.length} pages`);
  for (const hash of pages) {
    await open(page, hash);
    await page.waitForSelector(`nav a[href="${hash}"][aria-current="page"]`, { timeout: 20_000 });
    await page.waitForLoadState('networkidle');
    const { scroll, width } = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      width: window.innerWidth,
    }));
    assert(scroll <= width + 1, `${hash} is ${scroll} px wide in a ${width} px window`);
  }
  log(`${pages.length} pages fit 1024 px`);
  await open(page, '#/overview');
  await page.waitForSelector(tid('host-row'), { timeout: 20_000 });
});
