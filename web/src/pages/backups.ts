// Backups: policies with their standing against the RPO, the backups, and
// run / verify / restore with job progress (GET /api/v1/backups/jobs/{id}).

import { api, seg } from '../api';
import { add, busy, button, confirmInline, field, fill, h, input, Notice, select, table, td, tr, uid, type Child } from '../dom';
import { formatAgo, formatBytes, formatDuration, formatSeconds, formatTime } from '../format';
import { can, checkRestoreTarget, progressPercent, rpoStanding } from '../logic';
import type { PageCtx } from '../page';
import type { Backup, BackupJob, BackupPolicy } from '../types';
import { hostLink, loadInto, pageHeader, statusBadge } from '../widgets';

const FINISHED = new Set(['ok', 'failed']);

export function render(ctx: PageCtx): void {
  const manage = can(ctx.session.role, 'manageBackups');
  const policiesBox = h('div', { testid: 'backup-policies' });
  const trackedBox = h('ul', { class: 'plain-list jobs', testid: 'tracked-jobs', 'aria-live': 'polite', hidden: true });
  const trackedHeading = h('h3', { hidden: true }, 'Started from this page');
  const jobsBox = h('div', { testid: 'recent-jobs' });
  const backupsBox = h('div', { testid: 'backups' });
  const restoreBox = h('div', { testid: 'restore-panel' });
  const notice = new Notice('backup-error');
  const policyFilter = select({ testid: 'backups-filter-policy', name: 'policy' }, [['', 'All policies']], ctx.query.get('policy') ?? '');

  add(ctx.root, 
    pageHeader('Backups'),
    notice.el,
    h('section', { class: 'panel', 'aria-labelledby': 'pol-h' }, h('h2', { id: 'pol-h' }, 'Policies'), policiesBox),
    h('section', { class: 'panel', 'aria-labelledby': 'jobs-h' },
      h('h2', { id: 'jobs-h' }, 'Jobs'),
      trackedHeading, trackedBox,
      h('h3', null, 'Recent'), jobsBox),
    h('section', { class: 'panel', 'aria-labelledby': 'bk-h' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'bk-h' }, 'Backups'), h('div', { class: 'inline-field' }, field('Policy', policyFilter))),
      restoreBox,
      backupsBox),
  );

  const tracked = new Map<string, { job: BackupJob; el: HTMLLIElement }>();

  const jobLine = (job: BackupJob): Child[] => {
    const pct = job.total_bytes > 0 ? progressPercent(job.bytes, job.total_bytes) : null;
    return [
      statusBadge(job.state), ' ',
      h('strong', null, job.kind), ' ', job.policy, job.backup_id ? [' · ', h('code', null, job.backup_id)] : '', ' ',
      h('span', { class: 'muted' }, job.stage ? `stage ${job.stage}` : ''), ' ',
      pct !== null ? h('progress', { max: 100, value: pct, 'aria-label': `${job.kind} progress` }) : null,
      job.bytes ? h('span', { class: 'muted' }, ` ${formatBytes(job.bytes)}${job.total_bytes ? ` of ${formatBytes(job.total_bytes)}` : ''}`) : null,
      job.duration_ms ? h('span', { class: 'muted' }, ` · took ${formatDuration(job.duration_ms)}`) : null,
      job.restore_ms ? h('span', { testid: 'job-rto' }, ` · restore ${formatDuration(job.restore_ms)}`) : null,
      job.error ? h('div', { class: 'field-error', role: 'alert' }, job.error) : null,
    ];
  };

  const setJobEl = (el: HTMLElement, job: BackupJob) => {
    el.setAttribute('data-job-id', job.id);
    el.setAttribute('data-kind', job.kind);
    el.setAttribute('data-state', job.state);
    el.setAttribute('data-policy', job.policy);
    el.setAttribute('data-backup-id', job.backup_id);
    fill(el, ...jobLine(job));
  };

  const track = (job: BackupJob) => {
    const el = h('li', { testid: 'tracked-job' });
    tracked.set(job.id, { job, el });
    setJobEl(el, job);
    trackedBox.prepend(el);
    trackedBox.hidden = false;
    trackedHeading.hidden = false;
    if (FINISHED.has(job.state)) return;
    ctx.every(1500, async () => {
      const next = await api.get<BackupJob>(`/api/v1/backups/jobs/${seg(job.id)}`);
      if (!ctx.alive()) return false;
      setJobEl(el, next);
      if (FINISHED.has(next.state)) {
        void Promise.all([loadPolicies(), loadBackups(), loadJobs()]);
        return false;
      }
      return true;
    });
  };

  const runBackup = (policy: string, el: HTMLButtonElement) =>
    busy(el, notice, async () => {
      track(await api.post<BackupJob>('/api/v1/backups/run', { policy }));
    });

  const verify = (backup: Backup, el: HTMLButtonElement) =>
    busy(el, notice, async () => {
      track(await api.post<BackupJob>(`/api/v1/backups/${seg(backup.id)}/verify`, {}));
    });

  const openRestore = (backup: Backup) => {
    const target = input({ testid: 'restore-target', name: 'target', placeholder: backup.manifest?.source_kind === 'postgres' ? 'database:crm_restored' : 'dir:/srv/restored' });
    const inPlace = h('input', { type: 'checkbox', id: uid('inplace'), testid: 'restore-in-place' });
    const formNotice = new Notice('restore-error');
    const targetError = h('p', { class: 'field-error', role: 'alert', hidden: true, id: uid('target-err'), testid: 'restore-target-error' });
    target.setAttribute('aria-describedby', targetError.id);
    const form = h('form', { class: 'restore-form', novalidate: true, testid: 'restore-form', 'data-backup-id': backup.id },
      h('h3', null, 'Restore ', h('code', null, backup.id), ` (${backup.policy}, ${formatTime(backup.started_at_ms)})`),
      formNotice.el,
      h('div', { class: 'field' }, h('label', { for: (target.id = uid('target')) }, 'Restore into'), target,
        h('small', { class: 'hint' }, 'database:NAME for a PostgreSQL backup (a new database), dir:/path for volume and path sources'), targetError),
      can(ctx.session.role, 'restoreInPlace')
        ? h('div', { class: 'field checkbox' }, inPlace, h('label', { for: inPlace.id }, 'Restore in place, over the live source (admin)'))
        : null,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary', testid: 'restore-submit' }, 'Restore…'),
        button('Close', () => restoreBox.replaceChildren(), { testid: 'restore-close' })));
    inPlace.addEventListener('change', () => {
      target.disabled = inPlace.checked;
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      targetError.hidden = true;
      target.removeAttribute('aria-invalid');
      let body: Record<string, unknown>;
      let question: string;
      if (inPlace.checked) {
        body = { in_place: true, confirm: true };
        question = `Restore ${backup.id} OVER the live source of ${backup.policy}? What is there now is replaced.`;
      } else {
        const problem = checkRestoreTarget(target.value);
        if (problem) {
          targetError.textContent = problem;
          targetError.hidden = false;
          target.setAttribute('aria-invalid', 'true');
          target.focus();
          return;
        }
        body = { to: target.value.trim() };
        question = `Restore ${backup.id} into ${target.value.trim()}?`;
      }
      if (!(await confirmInline(form, question, 'Restore', 'confirm-restore'))) return;
      await busy(form, formNotice, async () => {
        track(await api.post<BackupJob>(`/api/v1/backups/${seg(backup.id)}/restore`, body));
        formNotice.ok('Restore started; its progress is under Jobs.');
      });
    });
    fill(restoreBox, form);
    target.focus();
  };

  const loadPolicies = () =>
    loadInto(policiesBox, () => api.get<BackupPolicy[]>('/api/v1/backups/policies'), (policies) => {
      const now = Date.now();
      const current = policyFilter.value;
      fill(policyFilter, h('option', { value: '' }, 'All policies'), policies.map((p) => h('option', { value: p.name }, p.name)));
      policyFilter.value = policies.some((p) => p.name === current) ? current : '';
      return table(
        ['Policy', 'Source', 'Schedule', 'Last success', 'Age vs RPO', 'Status', 'Last verification', 'Measured RTO', 'Next run', ''],
        policies.map((p) => {
          const s = p.status;
          const standing = rpoStanding(p, now);
          const bar = h('span', { class: `bar-fill level-${standing.level === 'overdue' ? 'high' : standing.level === 'warn' ? 'warn' : standing.level === 'never' ? 'none' : 'ok'}` });
          bar.style.width = `${Math.min(100, (standing.ratio ?? 0) * 100)}%`;
          const run: HTMLButtonElement | null = manage
            ? button('Run backup', () => void runBackup(p.name, run!), { testid: 'backup-run', 'data-policy': p.name })
            : null;
          return tr(
            { testid: 'backup-policy-row', 'data-policy': p.name, 'data-state': s?.state ?? '' },
            h('strong', null, p.name),
            td(null, p.source_kind, ' on ', p.host_id ? hostLink(p.host_id) : '—', h('div', { class: 'muted small' }, p.destinations.join(', '))),
            td(null, p.schedule || 'manual', p.verify_schedule ? h('div', { class: 'muted small' }, `verify ${p.verify_schedule}`) : null),
            td({ title: formatTime(s?.last_success_at_ms) }, formatAgo(s?.last_success_at_ms, now)),
            td({ testid: 'policy-rpo', 'data-level': standing.level },
              h('span', { class: 'bar', 'aria-hidden': 'true' }, bar), ' ',
              standing.ageSeconds === null ? `none yet (RPO ${formatSeconds(p.rpo_seconds)})` : `${formatSeconds(standing.ageSeconds)} of ${formatSeconds(p.rpo_seconds)}`),
            td(null, statusBadge(s?.state ?? 'unknown', { testid: 'policy-state' }), s?.reason ? h('div', { class: 'muted small' }, s.reason) : null,
              s?.last_error ? h('div', { class: 'field-error small' }, s.last_error) : null),
            td(null, s?.last_verify ? statusBadge(s.last_verify) : h('span', { class: 'muted' }, 'never'), ' ', s?.last_verified_at_ms ? formatAgo(s.last_verified_at_ms, now) : ''),
            td({ testid: 'policy-rto' }, s?.measured_rto_ms ? formatDuration(s.measured_rto_ms) : '—'),
            td({ title: formatTime(s?.next_run_at_ms) }, s?.next_run_at_ms ? formatAgo(s.next_run_at_ms, now) : '—'),
            td(null, run),
          );
        }),
        {},
        'No backup policies. Apply one with `argosy backup policy apply -f policy.yaml`.',
      );
    }, ctx.alive);

  const loadBackups = () =>
    loadInto(backupsBox, () => api.get<Backup[]>('/api/v1/backups', { policy: policyFilter.value, limit: 50 }), (list) => {
      const backups = [...list].sort((a, b) => b.started_at_ms - a.started_at_ms);
      return table(
        ['Backup', 'Policy', 'State', 'Trigger', 'Started', 'Took', 'Size', 'Verification', 'Restore time', ''],
        backups.map((b) => {
          const v: HTMLButtonElement | null = manage && b.state === 'ok' ? button('Verify', () => void verify(b, v!), { testid: 'backup-verify', 'data-backup-id': b.id }) : null;
          const r: HTMLButtonElement | null = manage && b.state === 'ok' ? button('Restore…', () => openRestore(b), { testid: 'backup-restore', 'data-backup-id': b.id }) : null;
          return tr(
            { testid: 'backup-row', 'data-backup-id': b.id, 'data-policy': b.policy, 'data-state': b.state, 'data-verify-state': b.verify_state },
            h('code', null, b.id), b.policy,
            td(null, statusBadge(b.state), b.error ? h('div', { class: 'field-error small' }, b.error) : null),
            b.trigger, formatTime(b.started_at_ms),
            b.finished_at_ms ? formatDuration(b.finished_at_ms - b.started_at_ms) : '—',
            b.manifest ? formatBytes(b.manifest.artifact_bytes) : '—',
            td(null, statusBadge(b.verify_state || 'not-verified'), b.verified_at_ms ? h('div', { class: 'muted small' }, formatAgo(b.verified_at_ms, Date.now())) : null,
              b.verify_error ? h('div', { class: 'field-error small' }, b.verify_error) : null),
            td({ testid: 'backup-rto' }, b.restore_ms ? formatDuration(b.restore_ms) : '—'),
            td(null, h('div', { class: 'actions' }, v, r)),
          );
        }),
        { class: 'compact' },
        'No backups yet.',
      );
    }, ctx.alive);

  const loadJobs = () =>
    loadInto(jobsBox, () => api.get<BackupJob[]>('/api/v1/backups/jobs', { limit: 10 }), (jobs) =>
      jobs.length === 0
        ? h('p', { class: 'empty' }, 'No jobs yet.')
        : h('ul', { class: 'plain-list jobs' }, [...jobs].sort((a, b) => b.created_at_ms - a.created_at_ms).map((job) => {
            const el = h('li', { testid: 'backup-job' });
            setJobEl(el, job);
            el.append(h('span', { class: 'muted small' }, ` ${formatAgo(job.created_at_ms, Date.now())}`));
            return el;
          })),
    ctx.alive);

  policyFilter.addEventListener('change', () => void loadBackups());
  ctx.every(10_000, loadPolicies, true);
  ctx.every(10_000, loadBackups, true);
  ctx.every(5000, loadJobs, true);
}
