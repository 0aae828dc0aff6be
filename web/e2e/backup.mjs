// Runs a backup of ARGOSY_BACKUP_POLICY from the page, waits for it to
// succeed, verifies it, waits for the verification and a measured RTO.
// Env: ARGOSY_URL, ARGOSY_USER, ARGOSY_PASSWORD, ARGOSY_BACKUP_POLICY,
//      ARGOSY_TIMEOUT_MS (default 180000, per job).
import { attrOf, cssValue, env, fail, login, open, scenario, textOf, tid, waitUntil } from './lib.mjs';

await scenario('backup', async ({ page, log }) => {
  const policy = env('ARGOSY_BACKUP_POLICY');
  const timeoutMs = Number(env('ARGOSY_TIMEOUT_MS', '180000'));
  const p = cssValue(policy);
  await login(page, env('ARGOSY_USER'), env('ARGOSY_PASSWORD'));
  await open(page, '#/backups');
  await page.waitForSelector(`${tid('backup-policy-row')}[data-policy="${p}"]`, { timeout: 20_000 });

  const waitJob = async (kind, id) => {
    const sel = `${tid('tracked-job')}[data-job-id="${cssValue(id)}"]`;
    await waitUntil(async () => {
      const state = await attrOf(page, sel, 'data-state');
      if (state === 'failed') fail(`the ${kind} job ${id} failed: ${await textOf(page, sel)}`);
      return state === 'ok';
    }, { timeoutMs, intervalMs: 1000, message: async () => `the ${kind} job ${id} did not succeed: ${await textOf(page, sel)}` });
    return sel;
  };

  // 1. Run.
  const [run] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/backups/run' && r.request().method() === 'POST'),
    page.click(`${tid('backup-run')}[data-policy="${p}"]`),
  ]);
  if (run.status() !== 200) fail(`running a backup answered ${run.status()}: ${await run.text()}`);
  const runJob = await run.json();
  log(`backup job ${runJob.id} started`);
  const runSel = await waitJob('backup', runJob.id);
  let backupId = (await attrOf(page, runSel, 'data-backup-id')) || '';
  log(`backup job ${runJob.id} succeeded${backupId ? `: backup ${backupId}` : ''}`);

  // 2. Verify that backup (or the newest good one of the policy).
  const row = await waitUntil(async () => {
    const sel = backupId
      ? `${tid('backup-row')}[data-backup-id="${cssValue(backupId)}"][data-state="ok"]`
      : `${tid('backup-row')}[data-policy="${p}"][data-state="ok"]`;
    return (await page.$(sel)) ? sel : null;
  }, { timeoutMs: 30_000, message: `no successful backup of ${policy} is listed` });
  backupId = (await attrOf(page, row, 'data-backup-id')) || backupId;
  const [verify] = await Promise.all([
    page.waitForResponse((r) => /\/api\/v1\/backups\/.+\/verify$/.test(new URL(r.url()).pathname) && r.request().method() === 'POST'),
    page.click(`${row} ${tid('backup-verify')}`),
  ]);
  if (verify.status() !== 200) fail(`verifying ${backupId} answered ${verify.status()}: ${await verify.text()}`);
  const verifyJob = await verify.json();
  log(`verify job ${verifyJob.id} started for ${backupId}`);
  await waitJob('verify', verifyJob.id);

  // 3. The measured RTO shows (on the backup and on the policy).
  const rto = await waitUntil(async () => {
    const backupRto = await textOf(page, `${tid('backup-row')}[data-backup-id="${cssValue(backupId)}"] ${tid('backup-rto')}`);
    const policyRto = await textOf(page, `${tid('backup-policy-row')}[data-policy="${p}"] ${tid('policy-rto')}`);
    const verified = await attrOf(page, `${tid('backup-row')}[data-backup-id="${cssValue(backupId)}"]`, 'data-verify-state');
    return verified === 'ok' && backupRto && backupRto !== '—' ? { backupRto, policyRto } : null;
  }, { timeoutMs: 30_000, message: `backup ${backupId} shows no verification with a measured restore time` });
  log(`verified; restore took ${rto.backupRto} (policy RTO ${rto.policyRto})`);
});
