// Deploys ARGOSY_SPEC (one replica with a route) through the API with the
// page's session, opens the Routing page, sees the region with its host and
// ingress, finds the service in the routed services, selects it with the
// keyboard and waits until ARGOSY_REGION serves it with 100 % on its one
// healthy allocation; the page still fits a 1024 px window.
// Env: ARGOSY_URL, ARGOSY_USER, ARGOSY_PASSWORD, ARGOSY_SPEC (YAML),
//      ARGOSY_SERVICE, ARGOSY_REGION, ARGOSY_HOST_ID, ARGOSY_TIMEOUT_MS (default 120000).
import { assert, attrOf, csrfToken, cssValue, env, fail, login, open, scenario, textOf, tid, waitUntil } from './lib.mjs';

await scenario('routing', async ({ page, log }) => {
  const spec = env('ARGOSY_SPEC');
  const service = env('ARGOSY_SERVICE');
  const region = env('ARGOSY_REGION');
  const hostId = env('ARGOSY_HOST_ID');
  const timeoutMs = Number(env('ARGOSY_TIMEOUT_MS', '120000'));
  await login(page, env('ARGOSY_USER'), env('ARGOSY_PASSWORD'));

  // 1. Deploy through the API, as the signed-in user (cookie + CSRF token).
  const token = await csrfToken(page);
  const applied = await page.evaluate(async ({ body, csrf }) => {
    const r = await fetch('/api/v1/services?format=yaml', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/yaml', 'X-CSRF-Token': csrf },
      body,
    });
    return { status: r.status, text: await r.text() };
  }, { body: spec, csrf: token });
  if (applied.status !== 200) fail(`applying ARGOSY_SPEC answered ${applied.status}: ${applied.text}`);
  assert(JSON.parse(applied.text).service === service, `the spec applied ${applied.text}, expected service ${service}`);
  log(`applied ${service}`);

  // 2. The Routing page: the region's host with its ingress, the service listed.
  await open(page, '#/routing');
  await page.waitForSelector(tid('nav-routing', '[aria-current="page"]'));
  const hostRow = `${tid('routing-region')}[data-region="${cssValue(region)}"] ${tid('routing-host')}[data-host-id="${cssValue(hostId)}"]`;
  await page.waitForSelector(hostRow, { timeout: 20_000 });
  const hostText = await textOf(page, hostRow);
  assert(/online/.test(hostText), `the host row reads ${JSON.stringify(hostText)}, expected online`);
  assert(/:\d+/.test(hostText), `the host row shows no ingress address:port: ${JSON.stringify(hostText)}`);
  await page.waitForSelector(`${tid('latency-table')} tr[data-from="${cssValue(region)}"]`);

  const row = `${tid('route-row')}[data-service="${cssValue(service)}"]`;
  await waitUntil(async () => ((await attrOf(page, row, 'data-serving')) ?? '').split(',').includes(region), {
    timeoutMs,
    intervalMs: 1000,
    message: async () => `${service} is not served in ${region}: the row reads ${JSON.stringify(await textOf(page, row))}`,
  });
  log(`routed services list ${service}, served in ${region}`);

  // 3. Select it with the keyboard; the region serves it with 100 % on its allocation.
  await page.focus(`${row} ${tid('route-select')}`);
  await page.keyboard.press('Enter');
  await page.waitForFunction((name) => decodeURIComponent(location.hash) === `#/routing/${name}`, service, { timeout: 10_000 });
  const section = `${tid('route-detail')} ${tid('route-region')}[data-region="${cssValue(region)}"]`;
  const backend = `${section}[data-serving="true"] ${tid('route-backend')}[data-weight-ppm="1000000"]`;
  await waitUntil(async () => page.$(backend), {
    timeoutMs,
    intervalMs: 1000,
    message: async () => `${region} does not send 100 % of ${service} to one allocation: ${JSON.stringify(await textOf(page, tid('route-detail')))}`,
  });
  const allocation = await attrOf(page, backend, 'data-allocation');
  const weight = await textOf(page, `${backend} ${tid('backend-weight')}`);
  assert(weight === '100 %', `the backend's weight reads ${JSON.stringify(weight)}, expected "100 %"`);
  assert((await attrOf(page, backend, 'data-state')) === 'serving', `allocation ${allocation} is not marked serving`);
  assert((await textOf(page, `${section} ${tid('route-region-state')}`)) === 'serving', `${region} is not shown as serving`);
  assert(!(await page.$(`${section} ${tid('route-region-503')}`)), `${region} is shown answering 503`);
  const explanation = await textOf(page, `${section} ${tid('route-explanation')}`);
  assert(explanation && explanation.includes('100 %'), `the explanation reads ${JSON.stringify(explanation)}`);
  const hostHref = await attrOf(page, `${backend} a[href^="#/hosts/"]`, 'href');
  assert(hostHref === `#/hosts/${encodeURIComponent(hostId)}`, `the backend's host links to ${hostHref}, expected host ${hostId}`);
  assert((await textOf(page, tid('route-tls'))) === 'none', `TLS reads ${JSON.stringify(await textOf(page, tid('route-tls')))}`);

  // The allocation is the service's one healthy allocation.
  const allocations = await page.evaluate(async (name) => {
    const r = await fetch(`/api/v1/services/${encodeURIComponent(name)}`, { credentials: 'same-origin' });
    return r.ok ? (await r.json()).allocations : [];
  }, service);
  const placed = allocations.find((a) => a.id === allocation);
  assert(placed, `allocation ${allocation} is not one of ${service}'s (${allocations.map((a) => a.id).join(', ')})`);
  assert(placed.host_id === hostId, `allocation ${allocation} runs on ${placed.host_id}, expected ${hostId}`);
  log(`${region}: 100 % on ${allocation} — ${explanation}`);

  // 4. Usable at 1024 px with the detail shown.
  await page.setViewportSize({ width: 1024, height: 768 });
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  assert(scroll <= width + 1, `#/routing/${service} is ${scroll} px wide in a ${width} px window`);
  await page.setViewportSize({ width: 1280, height: 900 });
});
