// Host page: inventory (GET /api/v1/hosts/{id}), live charts (history from
// GET …/metrics, then SSE …/metrics/live), and the allocations placed here.

import { api, seg } from '../api';
import { add, badge, fill, h, select, table, tr, field } from '../dom';
import { formatAgo, formatBytes, formatDuration, formatPercent, formatTime } from '../format';
import type { PageCtx } from '../page';
import type { Host, LivePoint, Metrics, Service } from '../types';
import { dl, labelsList, loadInto, serviceLink, statusBadge } from '../widgets';

/** The charted metrics: the names /api/v1/hosts/{id}/metrics accepts. */
export const CHARTS = [
  { metric: 'cpu', title: 'CPU', unit: 'percent' },
  { metric: 'memory_percent', title: 'Memory', unit: 'percent' },
  { metric: 'disk_used_percent', title: 'Disk (fullest)', unit: 'percent' },
  { metric: 'net_rx', title: 'Network in', unit: 'bytes_per_second' },
  { metric: 'net_tx', title: 'Network out', unit: 'bytes_per_second' },
];

const RANGES: { value: string; label: string; windowMs: number; step: string }[] = [
  { value: '15m', label: 'Last 15 minutes', windowMs: 15 * 60_000, step: '10s' },
  { value: '1h', label: 'Last hour', windowMs: 3_600_000, step: '30s' },
  { value: '6h', label: 'Last 6 hours', windowMs: 6 * 3_600_000, step: '2m' },
  { value: '24h', label: 'Last 24 hours', windowMs: 24 * 3_600_000, step: '10m' },
];

export async function render(ctx: PageCtx): Promise<void> {
  const id = ctx.params[0] ?? '';
  const { root } = ctx;
  const title = h('h1', null, id);
  const status = h('span', { testid: 'host-status' });
  const infoBox = h('div', { testid: 'host-inventory' });
  const allocBox = h('div', { testid: 'host-allocations' });
  const liveStatus = h('span', { class: 'live-status', testid: 'live-status', role: 'status' }, 'connecting…');
  const range = select({ testid: 'chart-range', name: 'range' }, RANGES.map((r) => [r.value, r.label] as [string, string]), '15m');
  const chartsGrid = h('div', { class: 'charts' });

  add(root, 
    h('p', { class: 'breadcrumb' }, h('a', { href: '#/overview' }, 'Overview'), ' / host'),
    h('div', { class: 'page-header' }, title, status),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'metrics-h' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'metrics-h' }, 'Metrics'), h('div', { class: 'inline-field' }, field('Range', range)), liveStatus),
      chartsGrid,
    ),
    h('div', { class: 'grid-2' },
      h('section', { class: 'panel', 'aria-labelledby': 'inv-h' }, h('h2', { id: 'inv-h' }, 'Inventory'), infoBox),
      h('section', { class: 'panel', 'aria-labelledby': 'alloc-h' }, h('h2', { id: 'alloc-h' }, 'Containers here'), allocBox),
    ),
  );

  const renderHost = (host: Host) => {
    title.textContent = host.hostname || host.id;
    ctx.setTitle(host.hostname || host.id);
    fill(status, statusBadge(host.status), ' ', h('span', { class: 'muted' }, `last seen ${formatAgo(host.last_seen_ms, Date.now())}`));
    const inv = host.inventory;
    const s = host.latest;
    return h(
      'div',
      null,
      host.runtime_error ? h('div', { class: 'notice notice-error', role: 'alert' }, `Cannot run containers: ${host.runtime_error}`) : null,
      dl([
        ['Id', h('code', null, host.id)],
        ['Region', host.region || '—'],
        ['Labels', labelsList(host.labels)],
        ['OS', inv ? `${inv.os} ${inv.os_version}` : '—'],
        ['Kernel', inv?.kernel || '—'],
        ['Architecture', inv?.arch || '—'],
        ['CPU', inv ? `${inv.cpu_count} × ${inv.cpu_model}` : '—'],
        ['Memory', inv ? formatBytes(inv.memory_bytes) : '—'],
        ['Swap', inv ? formatBytes(inv.swap_bytes) : '—'],
        ['Load', s ? `${s.load1.toFixed(2)} ${s.load5.toFixed(2)} ${s.load15.toFixed(2)}` : '—'],
        ['Processes', s ? String(s.process_count) : '—'],
        ['Uptime', s ? formatDuration(s.uptime_seconds * 1000) : '—'],
        ['Agent', inv?.agent_version || '—'],
        ['Docker', inv ? (inv.docker_available ? inv.docker_version || 'available' : `unavailable${inv.docker_error ? `: ${inv.docker_error}` : ''}`) : '—'],
        ['Enrolled', formatTime(host.enrolled_at_ms)],
        ['Certificate until', formatTime(host.certificate_not_after_ms)],
        ['Report interval', host.interval_seconds ? `${host.interval_seconds}s` : '—'],
      ]),
      inv && inv.disks.length
        ? table(
            ['Mount', 'Device', 'Filesystem', 'Size', 'Used'],
            inv.disks.map((d) => {
              const used = s?.disks.find((u) => u.mount_point === d.mount_point);
              return tr(null, h('code', null, d.mount_point), d.device, d.filesystem, formatBytes(d.total_bytes),
                used ? `${formatBytes(used.used_bytes)} (${formatPercent(used.total_bytes ? (used.used_bytes / used.total_bytes) * 100 : null, 0)})` : '—');
            }),
            { class: 'compact' },
          )
        : null,
    );
  };

  const host = await loadInto(infoBox, () => api.get<Host>(`/api/v1/hosts/${seg(id)}`), renderHost, ctx.alive);
  if (!host || !ctx.alive()) return;
  ctx.every(15_000, () => loadInto(infoBox, () => api.get<Host>(`/api/v1/hosts/${seg(id)}`), renderHost, ctx.alive));

  // Allocations on this host (from every service the caller may see).
  const loadAllocations = () =>
    loadInto(allocBox, () => api.get<Service[]>('/api/v1/services'), (services) => {
      const rows = services.flatMap((svc) =>
        svc.allocations.filter((a) => a.host_id === id).map((a) =>
          tr({ testid: 'host-allocation', 'data-alloc-id': a.id },
            serviceLink(svc.name), h('code', null, a.id), `r${a.revision}`, statusBadge(a.state), statusBadge(a.health),
            String(a.restarts), a.oom_killed ? badge('OOM killed', 'bad') : 'no',
            h('code', { title: a.container_id }, a.container_id.slice(0, 12) || '—'))),
      );
      return table(['Service', 'Allocation', 'Rev', 'State', 'Health', 'Restarts', 'OOM', 'Container'], rows, { class: 'compact' }, 'No allocation runs on this host.');
    }, ctx.alive);
  void loadAllocations();
  ctx.every(10_000, loadAllocations);

  // Charts: uPlot is loaded with this page only.
  const { MetricChart } = await import('../charts');
  if (!ctx.alive()) return;
  let current = RANGES[0];
  const charts = new Map(CHARTS.map((c) => [c.metric, new MetricChart({ ...c }, current.windowMs)]));
  fill(chartsGrid, [...charts.values()].map((c) => c.el));
  ctx.onCleanup(() => charts.forEach((c) => c.destroy()));

  const loadHistory = async () => {
    await Promise.all(
      [...charts.values()].map(async (chart) => {
        try {
          const m = await api.get<Metrics>(`/api/v1/hosts/${seg(id)}/metrics`, {
            metric: chart.spec.metric,
            since: current.value,
            step: current.step,
          });
          if (!ctx.alive()) return;
          chart.setUnit(m.unit);
          chart.loadHistory(m.points);
        } catch (error) {
          chart.el.setAttribute('data-error', error instanceof Error ? error.message : String(error));
        }
      }),
    );
  };
  range.addEventListener('change', () => {
    current = RANGES.find((r) => r.value === range.value) ?? RANGES[0];
    charts.forEach((c) => {
      c.setWindow(current.windowMs);
      c.clear();
    });
    void loadHistory();
  });
  await loadHistory();
  if (!ctx.alive()) return;

  // Live points: SSE, or polling if the stream cannot be opened.
  const metricsParam = CHARTS.map((c) => c.metric).join(',');
  let polling = false;
  const startPolling = () => {
    if (polling) return;
    polling = true;
    liveStatus.textContent = 'polling every 10 s';
    liveStatus.className = 'live-status live-polling';
    ctx.every(10_000, async () => {
      await Promise.all(
        [...charts.values()].map(async (chart) => {
          const since = (chart.buffer.lastTimestamp ?? Date.now() - current.windowMs) + 1;
          const m = await api.get<Metrics>(`/api/v1/hosts/${seg(id)}/metrics`, { metric: chart.spec.metric, since: String(since) });
          if (!ctx.alive()) return;
          for (const p of m.points) chart.append(p);
        }),
      ).catch(() => undefined);
    });
  };
  if (typeof EventSource === 'undefined') {
    startPolling();
    return;
  }
  const source = new EventSource(`/api/v1/hosts/${seg(id)}/metrics/live?metric=${encodeURIComponent(metricsParam)}`, { withCredentials: false });
  ctx.onCleanup(() => source.close());
  source.addEventListener('open', () => {
    liveStatus.textContent = 'live';
    liveStatus.className = 'live-status live-on';
  });
  source.addEventListener('point', (event) => {
    let point: LivePoint;
    try {
      point = JSON.parse((event as MessageEvent<string>).data) as LivePoint;
    } catch {
      return;
    }
    charts.get(point.metric)?.append(point);
  });
  source.addEventListener('error', (event) => {
    if (!ctx.alive()) return;
    if (event instanceof MessageEvent && typeof event.data === 'string' && event.data) {
      // The server's own `event: error` (the session ended, the host went
      // away): stop the stream; polling meets the same answer (a 401 goes
      // back to the login page) and shows why.
      source.close();
      startPolling();
      liveStatus.textContent = `live stream stopped: ${event.data}; polling every 10 s`;
      return;
    }
    if (source.readyState === EventSource.CLOSED) {
      // A non-200 answer (no stream, session ended): fall back to polling,
      // whose 401 takes the user back to the login page.
      source.close();
      startPolling();
    } else {
      liveStatus.textContent = 'reconnecting…';
      liveStatus.className = 'live-status live-off';
    }
  });
}
