// Fleet overview: hosts by region (GET /api/v1/hosts), firing alerts
// (GET /api/v1/alerts?state=firing), recent deployments and audit entries.

import { api } from '../api';
import { add, field, fill, h, input, messageOf, select, table, td, tr } from '../dom';
import { formatAgo, formatTime } from '../format';
import { can, groupByRegion, hostMatches, hostUsage, NO_REGION, parseLabelFilter, phaseKind } from '../logic';
import type { PageCtx } from '../page';
import type { Alert, AuditRecord, Deployment, Host } from '../types';
import { hostLink, labelsList, loadInto, pageHeader, serviceLink, statusBadge, usage } from '../widgets';

export function render(ctx: PageCtx): void {
  const { root } = ctx;
  let hosts: Host[] = [];
  let loaded = false;

  const regionSelect = select({ testid: 'filter-region', name: 'region' }, [['', 'All regions']]);
  const labelInput = input({ testid: 'filter-labels', name: 'labels', placeholder: 'role=web, tier=front', value: ctx.query.get('labels') ?? '' });
  const labelError = h('p', { class: 'field-error', id: 'label-filter-error', role: 'alert', hidden: true, testid: 'filter-labels-error' });
  labelInput.setAttribute('aria-describedby', 'label-filter-error');
  const summary = h('p', { class: 'summary', testid: 'fleet-summary' });
  const hostsBox = h('div', { testid: 'hosts' });
  const hostsError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true });

  const alertsBox = h('div', { testid: 'firing-alerts' });
  const deploymentsBox = h('div', { testid: 'recent-deployments' });
  const auditBox = h('div', { testid: 'recent-events' });

  add(root, 
    pageHeader('Fleet overview', summary),
    h(
      'div',
      { class: 'grid-2' },
      h('section', { class: 'panel', 'aria-labelledby': 'alerts-h' }, h('h2', { id: 'alerts-h' }, 'Firing alerts'), alertsBox),
      h('section', { class: 'panel', 'aria-labelledby': 'deploys-h' }, h('h2', { id: 'deploys-h' }, 'Recent deployments'), deploymentsBox),
    ),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'hosts-h' },
      h('h2', { id: 'hosts-h' }, 'Hosts'),
      h(
        'form',
        { class: 'filters', role: 'search', onsubmit: (e: Event) => { e.preventDefault(); renderHosts(); } },
        field('Region', regionSelect),
        h('div', { class: 'field' }, h('label', { for: (labelInput.id = 'filter-labels') }, 'Labels'), labelInput, labelError),
      ),
      hostsError,
      hostsBox,
    ),
    can(ctx.session.role, 'readAudit')
      ? h('section', { class: 'panel', 'aria-labelledby': 'events-h' }, h('h2', { id: 'events-h' }, 'Recent events'), auditBox)
      : null,
  );
  const initialRegion = ctx.query.get('region') ?? '';

  regionSelect.addEventListener('change', renderHosts);
  labelInput.addEventListener('input', renderHosts);

  function syncRegions(): void {
    const current = regionSelect.value || initialRegion;
    const regions = [...new Set(hosts.map((h) => h.region || NO_REGION))].sort();
    fill(regionSelect, h('option', { value: '' }, 'All regions'), regions.map((r) => h('option', { value: r }, r)));
    regionSelect.value = regions.includes(current) ? current : '';
  }

  function renderHosts(): void {
    const parsed = parseLabelFilter(labelInput.value);
    if (!parsed.ok) {
      labelError.textContent = parsed.error;
      labelError.hidden = false;
      labelInput.setAttribute('aria-invalid', 'true');
      return;
    }
    labelError.hidden = true;
    labelInput.removeAttribute('aria-invalid');
    const shown = hosts.filter((host) => hostMatches(host, regionSelect.value, parsed.labels));
    const online = hosts.filter((h) => h.status === 'online').length;
    summary.textContent = `${hosts.length} host${hosts.length === 1 ? '' : 's'}, ${online} online` +
      (shown.length !== hosts.length ? ` — ${shown.length} match the filter` : '');
    if (!loaded) return;
    if (hosts.length === 0) {
      fill(hostsBox, h('p', { class: 'empty' }, 'No hosts yet. An admin creates a join token under Administration; run its install command on a host.'));
      return;
    }
    const groups = groupByRegion(shown);
    if (groups.length === 0) {
      fill(hostsBox, h('p', { class: 'empty' }, 'No host matches the filter.'));
      return;
    }
    const now = Date.now();
    fill(
      hostsBox,
      groups.map((group) =>
        h(
          'div',
          { class: 'region', testid: 'region-group', 'data-region': group.region },
          h('h3', null, group.region, ' ', h('span', { class: 'muted' }, `${group.online}/${group.hosts.length} online`)),
          table(
            ['Host', 'Status', 'CPU', 'Memory', 'Disk', 'Labels', 'Last seen'],
            group.hosts.map((host) => {
              const u = hostUsage(host);
              return tr(
                { testid: 'host-row', 'data-host-id': host.id, 'data-status': host.status },
                td(null, hostLink(host.id, host.hostname || host.id), host.runtime_error ? h('div', { class: 'muted small' }, host.runtime_error) : null),
                td(null, statusBadge(host.status)),
                td(null, usage(u.cpu, 'CPU')),
                td(null, usage(u.memory, 'Memory')),
                td(null, usage(u.disk, 'Fullest disk')),
                td(null, labelsList(host.labels)),
                td({ title: formatTime(host.last_seen_ms) }, formatAgo(host.last_seen_ms, now)),
              );
            }),
          ),
        ),
      ),
    );
  }

  async function loadHosts(): Promise<void> {
    try {
      hosts = await api.get<Host[]>('/api/v1/hosts');
      if (!ctx.alive()) return;
      loaded = true;
      hostsError.hidden = true;
      syncRegions();
      renderHosts();
    } catch (error) {
      if (!ctx.alive()) return;
      hostsError.textContent = messageOf(error);
      hostsError.hidden = false;
    }
  }

  const loadAlerts = () =>
    loadInto(alertsBox, () => api.get<Alert[]>('/api/v1/alerts', { state: 'firing' }), (alerts) =>
      alerts.length === 0
        ? h('p', { class: 'empty ok-text' }, 'Nothing is firing.')
        : h(
            'ul',
            { class: 'plain-list' },
            alerts.map((a) =>
              h(
                'li',
                { testid: 'firing-alert', 'data-alert-id': a.id },
                statusBadge(a.severity),
                ' ',
                h('a', { href: '#/alerts' }, a.alertname),
                ' ',
                h('span', null, a.summary),
                ' ',
                h('span', { class: 'muted' }, formatAgo(a.firing_since_ms ?? a.started_at_ms, Date.now())),
                a.acknowledged ? h('span', { class: 'muted' }, ` · acknowledged by ${a.acknowledged.by}`) : null,
              ),
            ),
          ),
      ctx.alive,
    );

  const loadDeployments = () =>
    loadInto(deploymentsBox, () => api.get<Deployment[]>('/api/v1/deployments', { limit: 8 }), (list) =>
      list.length === 0
        ? h('p', { class: 'empty' }, 'No deployments yet.')
        : h(
            'ul',
            { class: 'plain-list' },
            list.map((d) =>
              h(
                'li',
                { testid: 'recent-deployment' },
                serviceLink(d.service),
                ` r${d.from_revision || '∅'} → r${d.to_revision} `,
                statusBadge(d.phase, { 'data-kind': phaseKind(d.phase, d.finished) }),
                ' ',
                h('span', { class: 'muted' }, `${d.strategy}, ${formatAgo(d.updated_at_ms || d.created_at_ms, Date.now())} by ${d.created_by}`),
              ),
            ),
          ),
      ctx.alive,
    );

  const loadAudit = () =>
    loadInto(auditBox, () => api.get<AuditRecord[]>('/api/v1/audit', { limit: 10 }), (records) =>
      records.length === 0
        ? h('p', { class: 'empty' }, 'No audit entries.')
        : table(
            ['When', 'Actor', 'Action', 'Target', 'Outcome'],
            records.map((r) =>
              tr({ testid: 'recent-event' }, formatTime(r.at_ms), r.actor, h('code', null, r.action), r.target, statusBadge(r.outcome)),
            ),
          ),
      ctx.alive,
    );

  ctx.every(10_000, loadHosts, true);
  ctx.every(15_000, loadAlerts, true);
  ctx.every(15_000, loadDeployments, true);
  if (can(ctx.session.role, 'readAudit')) ctx.every(30_000, loadAudit, true);
}
