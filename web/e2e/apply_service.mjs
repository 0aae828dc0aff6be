// Applying an invalid spec shows the validation errors (field errors next to
// the textarea); applying ARGOSY_SPEC rolls out until the deployment
// succeeds and every replica of ARGOSY_SERVICE is healthy.
// Env: ARGOSY_URL, ARGOSY_USER, ARGOSY_PASSWORD, ARGOSY_SPEC (YAML),
//      ARGOSY_SERVICE, ARGOSY_TIMEOUT_MS (default 120000).
import { assert, attrOf, cssValue, env, fail, login, open, scenario, textOf, tid, waitUntil } from './lib.mjs';

/** The spec with `replicas: -1` (added when the spec has no replicas line). */
export function invalidSpec(spec) {
  return /^replicas\s*:.*$/m.test(spec) ? spec.replace(/^replicas\s*:.*$/m, 'replicas: -1') : `${spec.trimEnd()}\nreplicas: -1\n`;
}

await scenario('apply_service', async ({ page, log }) => {
  const spec = env('ARGOSY_SPEC');
  const service = env('ARGOSY_SERVICE');
  const timeoutMs = Number(env('ARGOSY_TIMEOUT_MS', '120000'));
  await login(page, env('ARGOSY_USER'), env('ARGOSY_PASSWORD'));
  await open(page, '#/services');
  await page.waitForSelector(tid('spec-input'));
  await page.selectOption(tid('spec-format'), 'yaml');

  // 1. Invalid: the server's validation error, with the field named.
  await page.fill(tid('spec-input'), invalidSpec(spec));
  const [bad] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/services' && r.request().method() === 'POST'),
    page.click(tid('apply-submit')),
  ]);
  assert(bad.status() >= 400, `an invalid spec (replicas: -1) was accepted with ${bad.status()}`);
  const serverError = (await bad.json()).error ?? '';
  await page.waitForSelector(`${tid('apply-error')}:not([hidden])`);
  const shown = await textOf(page, tid('apply-error'));
  const firstLine = serverError.split('\n')[0];
  assert(shown.includes(firstLine), `the form shows ${JSON.stringify(shown)}; the server said ${JSON.stringify(serverError)}`);
  if (/spec\.replicas/.test(serverError)) {
    await page.waitForSelector(`${tid('spec-field-errors')}:not([hidden]) ${tid('spec-field-error')}[data-path="spec.replicas"]`, { timeout: 5000 });
  }
  log(`invalid spec refused: ${serverError.replace(/\n/g, ' | ')}`);

  // 2. Valid: follow the deployment until it succeeds and all replicas are healthy.
  await page.fill(tid('spec-input'), spec);
  const [good] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/services' && r.request().method() === 'POST'),
    page.click(tid('apply-submit')),
  ]);
  if (good.status() !== 200) fail(`applying ARGOSY_SPEC answered ${good.status()}: ${await good.text()}`);
  const applied = await good.json();
  assert(applied.service === service, `the spec applied service ${applied.service}, expected ${service}`);
  const deploymentId = applied.deployment?.id ?? '';
  log(`applied ${service} revision ${applied.revision}${deploymentId ? `, deployment ${deploymentId}` : ' (no change)'}`);
  await page.waitForFunction((name) => decodeURIComponent(location.hash).startsWith(`#/services/${name}`), service, { timeout: 10_000 });

  const panel = deploymentId ? `${tid('deployment')}[data-deployment-id="${cssValue(deploymentId)}"]` : tid('deployment');
  await waitUntil(async () => {
    const kind = await attrOf(page, panel, 'data-kind');
    if (kind === 'failed') fail(`deployment ${deploymentId} failed: ${await textOf(page, tid('deployment-phase'))}`);
    if (kind !== 'succeeded') return false;
    const healthy = Number(await attrOf(page, tid('service-health'), 'data-healthy'));
    const replicas = Number(await attrOf(page, tid('service-health'), 'data-replicas'));
    return replicas > 0 && healthy === replicas;
  }, {
    timeoutMs,
    intervalMs: 1000,
    message: async () =>
      `deployment ${deploymentId}: phase ${JSON.stringify(await textOf(page, tid('deployment-phase')))}, service ${JSON.stringify(await textOf(page, tid('service-health')))}`,
  });
  log(`deployment succeeded; ${await textOf(page, tid('service-health'))}`);
});
