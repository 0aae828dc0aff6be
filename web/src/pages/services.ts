// Services: list (GET /api/v1/services), detail with revisions, allocations
// and the current deployment (polled every 2 s while it runs), apply from
// the browser (POST /api/v1/services?format=yaml|toml, the spec as the body),
// and the rollback / promote / pause / resume / cancel / scale / stop actions.

import { api, ApiError, seg } from '../api';
import { add, busy, button, confirmInline, field, fill, h, input, messageOf, Notice, select, table, td, tr, uid } from '../dom';
import { formatAgo, formatTime } from '../format';
import { can, parseSpecErrors, phaseKind, progressPercent } from '../logic';
import type { PageCtx } from '../page';
import type { ApplyResult, Deployment, Revision, Service } from '../types';
import { dl, hostLink, loadInto, pageHeader, serviceLink, statusBadge } from '../widgets';

const EXAMPLE = `name: web
image: nginx:1.27-alpine
replicas: 2
resources: { cpu: 0.25, memory: 128MiB }
ports: ["8080:80"]
health_check: { http: { path: /, port: 80 }, interval: 5s }
update: { strategy: rolling, max_parallel: 1, min_healthy_time: 10s, auto_revert: true }
`;

export function render(ctx: PageCtx): void | Promise<void> {
  if (ctx.params.length > 0) return renderService(ctx, ctx.params.join('/'));
  return renderList(ctx);
}

function healthText(svc: Service): HTMLElement {
  const all = svc.replicas > 0 && svc.healthy >= svc.replicas;
  return h(
    'span',
    {
      class: `health ${svc.stopped ? 'health-stopped' : all ? 'health-ok' : 'health-partial'}`,
      testid: 'service-health',
      'data-healthy': svc.healthy,
      'data-replicas': svc.replicas,
      'data-running': svc.running,
    },
    svc.stopped ? 'stopped' : `${svc.healthy}/${svc.replicas} healthy`,
  );
}

function renderList(ctx: PageCtx): void {
  const listBox = h('div', { testid: 'services' });
  const mutate = can(ctx.session.role, 'deploy');
  add(ctx.root, 
    pageHeader('Services'),
    h('section', { class: 'panel', 'aria-labelledby': 'svc-h' }, h('h2', { id: 'svc-h' }, 'All services'), listBox),
    mutate ? applyPanel(ctx, EXAMPLE, 'yaml', 'Apply a spec') : null,
  );
  const load = () =>
    loadInto(listBox, () => api.get<Service[]>('/api/v1/services'), (services) =>
      table(
        ['Service', 'Health', 'Running', 'Revision', 'Status'],
        services
          .sort((a, b) => a.name.localeCompare(b.name))
          .map((svc) =>
            tr(
              { testid: 'service-row', 'data-name': svc.name },
              serviceLink(svc.name),
              healthText(svc),
              String(svc.running),
              `r${svc.current_revision}${svc.stable_revision && svc.stable_revision !== svc.current_revision ? ` (stable r${svc.stable_revision})` : ''}`,
              svc.stopped ? statusBadge('stopped') : svc.active_deployment_id ? h('a', { href: `#/services/${encodeURIComponent(svc.name)}` }, statusBadge('deploying')) : statusBadge('running'),
            ),
          ),
        {},
        mutate ? 'No services yet: apply a spec below.' : 'No services yet.',
      ),
    ctx.alive);
  ctx.every(5000, load, true);
}

/** The apply form: spec textarea + format select; every validation error shown, field errors next to the textarea. */
function applyPanel(ctx: PageCtx, initialSpec: string, initialFormat: string, heading: string): HTMLElement {
  const spec = h('textarea', { rows: 16, spellcheck: 'false', class: 'mono', testid: 'spec-input', name: 'spec' });
  spec.value = initialSpec;
  const format = select({ testid: 'spec-format', name: 'format' }, [['yaml', 'YAML'], ['toml', 'TOML']], initialFormat);
  const dryRun = h('input', { type: 'checkbox', testid: 'spec-dry-run', id: uid('dry') });
  const file = h('input', { type: 'file', accept: '.yaml,.yml,.toml,text/yaml,application/toml', testid: 'spec-file' });
  const notice = new Notice('apply-error');
  const result = h('div', { testid: 'apply-result', role: 'status' });
  const fieldErrorsId = uid('spec-errors');
  const fieldErrors = h('ul', { class: 'field-errors', id: fieldErrorsId, testid: 'spec-field-errors', hidden: true });
  spec.setAttribute('aria-describedby', fieldErrorsId);

  file.addEventListener('change', async () => {
    const f = file.files?.[0];
    if (!f) return;
    spec.value = await f.text();
    if (/\.toml$/i.test(f.name)) format.value = 'toml';
    else if (/\.ya?ml$/i.test(f.name)) format.value = 'yaml';
  });

  const form = h(
    'form',
    { class: 'apply-form', novalidate: true, testid: 'apply-form' },
    notice.el,
    h('div', { class: 'spec-editor' },
      h('div', { class: 'field grow' }, h('label', { for: (spec.id = uid('spec')) }, 'Spec'), spec),
      h('div', { class: 'spec-side' }, h('h3', null, 'Problems'), fieldErrors, h('p', { class: 'muted small', testid: 'spec-no-errors' }, 'Validation errors that name a field are listed here.'))),
    h('div', { class: 'row' },
      field('Format', format),
      field('Load from a file', file),
      h('div', { class: 'field checkbox' }, dryRun, h('label', { for: dryRun.id }, 'Dry run (validate and run the admission policies only)')),
    ),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'apply-submit' }, 'Apply')),
    result,
  );

  const showFieldErrors = (message: string) => {
    const parsed = parseSpecErrors(message);
    if (parsed.fields.length === 0) {
      fieldErrors.hidden = true;
      fieldErrors.replaceChildren();
      spec.removeAttribute('aria-invalid');
      return;
    }
    fill(fieldErrors, parsed.fields.map((f) => h('li', { testid: 'spec-field-error', 'data-path': f.path }, h('code', null, f.path), ' ', f.message)));
    fieldErrors.hidden = false;
    spec.setAttribute('aria-invalid', 'true');
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    result.replaceChildren();
    fieldErrors.hidden = true;
    if (!spec.value.trim()) {
      notice.error('The spec is empty: paste a YAML or TOML service spec.');
      spec.focus();
      return;
    }
    void busy(form, null, async () => {
      notice.clear();
      try {
        const applied = await api.post<ApplyResult>('/api/v1/services', undefined, {
          body: spec.value,
          contentType: format.value === 'toml' ? 'application/toml' : 'application/yaml',
          query: { format: format.value, dry_run: dryRun.checked },
        });
        showFieldErrors('');
        const d = applied.deployment;
        result.className = 'notice notice-ok';
        fill(
          result,
          h('p', null,
            dryRun.checked ? 'Dry run passed: ' : applied.created ? 'Applied: ' : 'No change: ',
            serviceLink(applied.service), ` revision ${applied.revision}`,
            d ? ` — deployment ${d.id} (${d.strategy}) ${d.phase}` : ''),
          applied.warnings.length ? h('ul', { class: 'warnings', testid: 'apply-warnings' }, applied.warnings.map((w) => h('li', null, `Warning: ${w}`))) : null,
          applied.defaults_applied.length ? h('ul', null, applied.defaults_applied.map((w) => h('li', null, `Default applied: ${w}`))) : null,
        );
        if (!dryRun.checked) {
          const target = `#/services/${encodeURIComponent(applied.service)}`;
          if (location.hash === target) ctx.navigate(`${target}?applied=${applied.revision}`);
          else ctx.navigate(target);
        }
      } catch (error) {
        const message = messageOf(error);
        notice.error(message);
        showFieldErrors(message);
        if (!(error instanceof ApiError)) return;
        spec.focus();
      }
    });
  });

  return h('section', { class: 'panel', 'aria-labelledby': 'apply-h' }, h('h2', { id: 'apply-h' }, heading), form);
}

function deploymentPanel(ctx: PageCtx, d: Deployment, onChange: (d: Deployment) => void): HTMLElement {
  const kind = phaseKind(d.phase, d.finished);
  const pct = progressPercent(d.new_healthy, d.replicas);
  const notice = new Notice('deployment-error');
  const actions = h('div', { class: 'actions' });
  const act = (action: string, label: string, danger = false) => {
    const b: HTMLButtonElement = button(label, () => {
      void busy(b, notice, async () => {
        onChange(await api.post<Deployment>(`/api/v1/deployments/${seg(d.id)}/${action}`));
      });
    }, { testid: `deployment-${action}`, class: danger ? 'danger' : undefined });
    return b;
  };
  if (can(ctx.session.role, 'deploy') && !d.finished) {
    const p = d.phase.toLowerCase();
    if (p.startsWith('awaiting')) actions.append(act('promote', 'Promote'));
    if (p.startsWith('paused')) actions.append(act('resume', 'Resume'));
    else if (!p.startsWith('revert')) actions.append(act('pause', 'Pause'));
    actions.append(act('cancel', 'Cancel deployment', true));
  }
  return h(
    'div',
    { class: `deployment deployment-${kind}`, testid: 'deployment', 'data-deployment-id': d.id, 'data-kind': kind, 'data-finished': String(d.finished) },
    h('p', { class: 'deployment-head' },
      h('strong', { testid: 'deployment-phase', 'data-kind': kind }, d.phase), ' ',
      h('span', { class: 'muted' }, `${d.strategy}, r${d.from_revision || '∅'} → r${d.to_revision}`)),
    h('div', { class: 'progress-row' },
      h('progress', { max: 100, value: pct, 'aria-label': 'New replicas healthy', testid: 'deployment-progress' }),
      h('span', { testid: 'deployment-counts' }, `${d.new_healthy}/${d.replicas} new healthy · ${d.new_total} new · ${d.old_total} old`)),
    dl([
      ['Id', h('code', null, d.id)],
      ['Started', `${formatTime(d.created_at_ms)} by ${d.created_by}`],
      ['Updated', formatAgo(d.updated_at_ms, Date.now())],
    ]),
    notice.el,
    actions,
  );
}

async function renderService(ctx: PageCtx, name: string): Promise<void> {
  const mutate = can(ctx.session.role, 'deploy');
  const health = h('span');
  const deploymentBox = h('div', { testid: 'current-deployment' }, h('p', { class: 'loading' }, 'Loading…'));
  const allocBox = h('div', { testid: 'allocations' });
  const revisionsBox = h('div', { testid: 'revisions' });
  const deploymentsBox = h('div', { testid: 'deployments' });
  const historyBox = h('div', { testid: 'service-history' });
  const actionsBox = h('div', { testid: 'service-actions' });
  const applyBox = h('div');
  ctx.setTitle(name);

  add(ctx.root, 
    h('p', { class: 'breadcrumb' }, h('a', { href: '#/services' }, 'Services'), ' / ', name),
    pageHeader(name, health),
    h('div', { class: 'grid-2' },
      h('section', { class: 'panel', 'aria-labelledby': 'dep-h' }, h('h2', { id: 'dep-h' }, 'Current deployment'), deploymentBox),
      mutate ? h('section', { class: 'panel', 'aria-labelledby': 'act-h' }, h('h2', { id: 'act-h' }, 'Actions'), actionsBox) : null,
    ),
    h('section', { class: 'panel', 'aria-labelledby': 'al-h' }, h('h2', { id: 'al-h' }, 'Allocations'), allocBox),
    h('section', { class: 'panel', 'aria-labelledby': 'rev-h' }, h('h2', { id: 'rev-h' }, 'Revisions'), revisionsBox),
    h('div', { class: 'grid-2' },
      h('section', { class: 'panel', 'aria-labelledby': 'dl-h' }, h('h2', { id: 'dl-h' }, 'Deployments'), deploymentsBox),
      h('section', { class: 'panel', 'aria-labelledby': 'hist-h' }, h('h2', { id: 'hist-h' }, 'History'), historyBox),
    ),
    applyBox,
  );

  let replicasInput: HTMLInputElement | null = null;
  let shownDeployment: Deployment | null = null;
  let pollingId = '';
  let revisions: Revision[] = [];

  const showDeployment = (d: Deployment | null) => {
    shownDeployment = d;
    if (!d) {
      fill(deploymentBox, h('p', { class: 'empty' }, 'No deployment yet.'));
      return;
    }
    fill(deploymentBox, deploymentPanel(ctx, d, (next) => {
      showDeployment(next);
      followDeployment(next);
    }));
  };

  /** Polls a running deployment every 2 s until it finishes. */
  const followDeployment = (d: Deployment) => {
    if (d.finished || pollingId === d.id) return;
    pollingId = d.id;
    ctx.every(2000, async () => {
      if (pollingId !== d.id) return false;
      try {
        const next = await api.get<Deployment>(`/api/v1/deployments/${seg(d.id)}`);
        if (!ctx.alive() || pollingId !== d.id) return false;
        showDeployment(next);
        if (next.finished) {
          pollingId = '';
          void refresh();
          return false;
        }
      } catch (error) {
        fill(deploymentBox, h('div', { class: 'notice notice-error', role: 'alert' }, messageOf(error)));
      }
      return true;
    });
  };

  const refresh = async (): Promise<void> => {
    let svc: Service;
    try {
      svc = await api.get<Service>(`/api/v1/services/${seg(name)}`);
    } catch (error) {
      if (!ctx.alive()) return;
      fill(health, h('span', { class: 'notice notice-error', role: 'alert', testid: 'service-error' }, messageOf(error)));
      if (!shownDeployment) fill(deploymentBox, h('p', { class: 'empty' }, '—'));
      return;
    }
    if (!ctx.alive()) return;
    fill(health, healthText(svc), ' ', svc.stopped ? statusBadge('stopped') : null);
    if (replicasInput && replicasInput.value === '' && document.activeElement !== replicasInput) replicasInput.value = String(svc.replicas);
    fill(
      allocBox,
      table(
        ['Allocation', 'Host', 'Revision', 'State', 'Health', 'Restarts', 'OOM', 'Message'],
        svc.allocations.map((a) =>
          tr({ testid: 'allocation-row', 'data-alloc-id': a.id, 'data-health': a.health, 'data-state': a.state },
            h('code', null, a.id), hostLink(a.host_id), `r${a.revision}`,
            td(null, statusBadge(a.state), a.stopping ? ' stopping' : ''), statusBadge(a.health), String(a.restarts),
            a.oom_killed ? statusBadge('failed', {}) : 'no', a.message || ''),
        ),
        { class: 'compact' },
        'No allocations.',
      ),
    );
    fill(historyBox, svc.history.length
      ? h('ol', { class: 'events' }, [...svc.history].sort((a, b) => b.seq - a.seq).slice(0, 30).map((e) =>
          h('li', null, h('span', { class: 'muted' }, formatTime(e.at_ms)), ' ', e.message)))
      : h('p', { class: 'empty' }, 'No events.'));

    const deployments = await api.get<Deployment[]>('/api/v1/deployments', { service: name, limit: 20 }).catch(() => [] as Deployment[]);
    if (!ctx.alive()) return;
    deployments.sort((a, b) => b.created_at_ms - a.created_at_ms);
    fill(deploymentsBox, table(['Id', 'Revisions', 'Strategy', 'Phase', 'Started', 'By'],
      deployments.map((d) => tr({ testid: 'deployment-row', 'data-deployment-id': d.id },
        h('code', null, d.id), `r${d.from_revision || '∅'} → r${d.to_revision}`, d.strategy,
        statusBadge(d.phase, { 'data-kind': phaseKind(d.phase, d.finished) }), formatTime(d.created_at_ms), d.created_by)),
      { class: 'compact' }, 'No deployments.'));

    // Which deployment to show: the active one, else the newest.
    const activeId = svc.active_deployment_id;
    let current: Deployment | null = null;
    if (activeId) current = deployments.find((d) => d.id === activeId) ?? (await api.get<Deployment>(`/api/v1/deployments/${seg(activeId)}`).catch(() => null));
    else current = deployments[0] ?? null;
    if (!ctx.alive()) return;
    if (current && pollingId !== current.id) {
      if (!shownDeployment || shownDeployment.id !== current.id || !pollingId) showDeployment(current);
      followDeployment(current);
    } else if (!current) showDeployment(null);
  };

  const loadRevisions = () =>
    loadInto(revisionsBox, () => api.get<Revision[]>(`/api/v1/services/${seg(name)}/revisions`), (list) => {
      revisions = [...list].sort((a, b) => b.number - a.number);
      return table(['Revision', 'Created', 'By', 'Format', 'Secrets', 'Spec', ''],
        revisions.map((r) => {
          const rollback: HTMLButtonElement | null = mutate ? button(`Roll back to r${r.number}`, () => void doRollback(r.number, rollback!), { testid: 'revision-rollback', 'data-revision': r.number }) : null;
          const edit = mutate ? button('Edit as new', () => loadApply(r), { testid: 'revision-edit' }) : null;
          return tr({ testid: 'revision-row', 'data-revision': r.number },
            `r${r.number}`, formatTime(r.created_at_ms), r.created_by, r.format,
            Object.entries(r.secret_versions ?? {}).map(([k, v]) => h('div', null, h('code', null, `${k}@${v}`))),
            h('details', null, h('summary', null, 'Show spec'), h('pre', { class: 'spec' }, r.spec)),
            h('div', { class: 'actions' }, rollback, edit));
        }), { class: 'compact' }, 'No revisions.');
    }, ctx.alive);

  const actionNotice = new Notice('service-action-error');
  const actionResult = h('p', { role: 'status', testid: 'service-action-result', class: 'muted' });
  const doRollback = async (to: number | null, el: HTMLButtonElement) => {
    await busy(el, actionNotice, async () => {
      const d = await api.post<Deployment>(`/api/v1/services/${seg(name)}/rollback`, undefined, { query: { to: to ?? undefined } });
      actionResult.textContent = `Rolling back: deployment ${d.id} to r${d.to_revision}.`;
      showDeployment(d);
      followDeployment(d);
      void loadRevisions();
    });
  };

  const loadApply = (r: Revision, focus = true) => {
    fill(applyBox, applyPanel(ctx, r.spec, r.format === 'toml' ? 'toml' : 'yaml', `Apply a new revision (from r${r.number})`));
    if (focus) applyBox.querySelector('textarea')?.focus();
  };

  if (mutate) {
    const replicas = input({ type: 'number', min: 0, max: 1000, step: 1, testid: 'scale-replicas', name: 'replicas' });
    replicasInput = replicas;
    const scaleForm = h('form', { class: 'row', novalidate: true },
      field('Replicas', replicas),
      h('button', { type: 'submit', testid: 'scale-submit' }, 'Scale'));
    scaleForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const n = Number(replicas.value);
      if (replicas.value === '' || !Number.isInteger(n) || n < 0) {
        actionNotice.error('Replicas must be a whole number, 0 or more.');
        replicas.focus();
        return;
      }
      void busy(scaleForm, actionNotice, async () => {
        const change = await api.post<{ message: string; service: Service | null }>(`/api/v1/services/${seg(name)}/scale`, undefined, { query: { replicas: n } });
        actionResult.textContent = change.message || `Scaled to ${n}.`;
        await refresh();
      });
    });
    const rollbackBtn: HTMLButtonElement = button('Roll back to the previous good revision', () => void doRollback(null, rollbackBtn), { testid: 'service-rollback' });
    const stopBtn: HTMLButtonElement = button('Stop service', async () => {
      if (!(await confirmInline(actionsBox, `Stop ${name}? Its containers are drained and stopped; apply or scale starts it again.`, 'Stop it', 'confirm-stop'))) return;
      await busy(stopBtn, actionNotice, async () => {
        const change = await api.post<{ message: string }>(`/api/v1/services/${seg(name)}/stop`);
        actionResult.textContent = change.message || 'Stopping.';
        await refresh();
      });
    }, { testid: 'service-stop', class: 'danger' });
    fill(actionsBox, actionNotice.el, scaleForm, h('div', { class: 'actions' }, rollbackBtn, stopBtn), actionResult);
  }

  await Promise.all([refresh(), loadRevisions()]);
  if (!ctx.alive()) return;
  if (mutate && revisions.length) {
    loadApply(revisions[0], false);
  }
  ctx.every(3000, refresh);
}
