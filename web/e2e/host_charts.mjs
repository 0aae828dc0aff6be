// The host page's CPU chart has points and its data-points grows within
// ARGOSY_LIVE_WAIT_MS (default 20 s): live data arrives.
// Env: ARGOSY_URL, ARGOSY_USER, ARGOSY_PASSWORD, ARGOSY_HOST_ID.
import { attrOf, env, login, open, scenario, tid, waitUntil } from './lib.mjs';

await scenario('host_charts', async ({ page, log }) => {
  const hostId = env('ARGOSY_HOST_ID');
  const liveWait = Number(env('ARGOSY_LIVE_WAIT_MS', '20000'));
  await login(page, env('ARGOSY_USER'), env('ARGOSY_PASSWORD'));
  await open(page, `#/hosts/${encodeURIComponent(hostId)}`);
  const chart = tid('chart-cpu');
  await page.waitForSelector(chart, { timeout: 20_000 });
  for (const metric of ['memory_percent', 'disk_used_percent', 'net_rx', 'net_tx']) {
    await page.waitForSelector(tid(`chart-${metric}`), { timeout: 5000 });
  }
  const points = async () => Number((await attrOf(page, chart, 'data-points')) ?? '0');
  const first = await waitUntil(async () => {
    const n = await points();
    return n > 0 ? n : 0;
  }, {
    timeoutMs: 30_000,
    message: async () => `the cpu chart has no points (data-error: ${await attrOf(page, chart, 'data-error')})`,
  });
  log(`cpu chart holds ${first} point(s) after loading the history`);
  const grown = await waitUntil(async () => {
    const n = await points();
    return n > first ? n : 0;
  }, {
    timeoutMs: liveWait,
    intervalMs: 500,
    message: async () =>
      `the cpu chart's data-points stayed at ${await points()} (live points: ${await attrOf(page, chart, 'data-live-points')}, live status: ${await page.textContent(tid('live-status'))})`,
  });
  log(`cpu chart grew to ${grown} point(s); live status: ${await page.textContent(tid('live-status'))}`);
  await page.waitForSelector(`${chart} canvas`, { timeout: 5000 });
});
