// A viewer sees the services and secrets pages without mutating controls,
// and a forced mutating request with the CSRF token is refused with 403.
// Env: ARGOSY_URL, ARGOSY_VIEWER_USER, ARGOSY_VIEWER_PASSWORD.
import { assert, csrfToken, env, login, open, scenario, tid, waitUntil } from './lib.mjs';

const MUTATING = [
  'apply-submit', 'spec-input', 'service-stop', 'service-rollback', 'scale-submit', 'revision-rollback',
  'deployment-cancel', 'deployment-pause', 'deployment-promote',
  'secret-submit', 'secret-delete', 'secret-reveal', 'secret-rotate-open',
];

await scenario('viewer', async ({ page, log }) => {
  await login(page, env('ARGOSY_VIEWER_USER'), env('ARGOSY_VIEWER_PASSWORD'));
  const role = await page.getAttribute(tid('whoami'), 'data-role');
  assert(role === 'viewer', `signed in with role ${role}, expected viewer`);
  assert(!(await page.$(tid('nav-admin'))), 'a viewer sees the Administration link');

  const noControls = async (where) => {
    for (const id of MUTATING) {
      assert(!(await page.$(tid(id))), `a viewer sees the ${id} control on the ${where} page`);
    }
  };
  const loaded = async (box) =>
    waitUntil(async () => {
      const text = await page.textContent(tid(box));
      return text && !text.includes('Loading') ? true : false;
    }, { timeoutMs: 15_000, message: `the ${box} list did not load` });

  await open(page, '#/services');
  await loaded('services');
  await noControls('services');
  const firstService = await page.$(`${tid('service-row')} a`);
  if (firstService) {
    await firstService.click();
    await page.waitForSelector(tid('service-health'));
    await noControls('service');
  }
  await open(page, '#/secrets');
  await loaded('secrets');
  await noControls('secrets');
  const versions = await page.$(tid('secret-versions-open'));
  if (versions) {
    await versions.click();
    await page.waitForSelector(tid('secret-version-row'));
    await noControls('secret versions');
  }
  log('no mutating controls shown');

  const token = await csrfToken(page);
  assert(token, 'GET /api/v1/session gave no csrf_token');
  const forced = await page.evaluate(async (csrf) => {
    const attempt = async (path, body, contentType) => {
      const r = await fetch(path, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': contentType, 'X-CSRF-Token': csrf },
        body,
      });
      return { path, status: r.status, body: await r.text() };
    };
    return [
      await attempt('/api/v1/secrets', JSON.stringify({ name: 'viewer-must-not-write', value_base64: 'eA==' }), 'application/json'),
      await attempt('/api/v1/services?format=yaml', 'name: viewer-must-not-deploy\nimage: nginx:1\nreplicas: 1\n', 'application/yaml'),
    ];
  }, token);
  for (const r of forced) {
    assert(r.status === 403, `a viewer's POST ${r.path} with the CSRF token answered ${r.status} (expected 403): ${r.body}`);
  }
  log(`forced writes refused: ${forced.map((r) => `${r.path} → ${r.status}`).join(', ')}`);
});
