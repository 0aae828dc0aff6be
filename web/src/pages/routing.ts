// Routing: the regions with their hosts and ingresses and the round trips
// measured between them (GET /api/v1/hosts, GET /api/v1/routes), every
// routed service and the regions that serve it, and for the selected
// service (#/routing/NAME, GET /api/v1/routes/NAME) each region's weights
// by revision, why, and the last five minutes of traffic. Refreshed every
// 5 s while the tab is visible; a section is redrawn only when its data
// changed, so keyboard focus stays put.

import { api, seg } from '../api';
import { add, badge, fill, h, messageOf, table, td, tr, type Child } from '../dom';
import { formatTime } from '../format';
import { groupByRegion } from '../logic';
import type { PageCtx } from '../page';
import {
  formatLatency, hostIngress, latencyMatrix, routingRegions, servingStates, sortRegionRoutes, sortRoutes,
  trafficRows, weightBars, type WeightBar,
} from '../routing';
import { routeHash } from '../router';
import type { Host, RegionRoutes, RevisionTraffic, RouteSummary, RoutesList, ServiceRoutes } from '../types';
import { dl, hostLink, pageHeader, serviceLink, statusBadge } from '../widgets';

const REFRESH_MS = 5000;

/** Fills `box` with `render()` only when `key` differs from what it shows. */
function redraw(box: HTMLElement, key: string, render: () => Child): void {
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  fill(box, render());
}

function showError(box: HTMLElement, error: unknown): void {
  redraw(box, `error:${messageOf(error)}`, () => h('div', { class: 'notice notice-error', role: 'alert' }, messageOf(error)));
}

export function render(ctx: PageCtx): void {
  const selected = ctx.params.join('/');
  const updated = h('span', { class: 'live-status', testid: 'routing-updated' }, 'loading…');
  const regionsBox = h('div', { testid: 'routing-regions' }, h('p', { class: 'loading' }, 'Loading…'));
  const matrixBox = h('div', { testid: 'latency-matrix' }, h('p', { class: 'loading' }, 'Loading…'));
  const routesBox = h('div', { testid: 'routes' }, h('p', { class: 'loading' }, 'Loading…'));
  const detailHeading = h('h2', { id: 'route-detail-h', tabindex: '-1' }, selected ? `Routes of ${selected}` : 'Routes of a service');
  const detailBox = h('div', { testid: 'route-detail', 'data-service': selected || null },
    selected ? h('p', { class: 'loading' }, 'Loading…') : h('p', { class: 'empty' }, 'Select a service above to see where each region sends its requests.'));
  if (selected) ctx.setTitle(`${selected} · Routing`);

  add(ctx.root,
    pageHeader('Routing', updated),
    h('div', { class: 'grid-2' },
      h('section', { class: 'panel', 'aria-labelledby': 'rt-regions-h' }, h('h2', { id: 'rt-regions-h' }, 'Regions and hosts'), regionsBox),
      h('section', { class: 'panel', 'aria-labelledby': 'rt-rtt-h' }, h('h2', { id: 'rt-rtt-h' }, 'Round trips between regions'), matrixBox),
    ),
    h('section', { class: 'panel', 'aria-labelledby': 'rt-routes-h' }, h('h2', { id: 'rt-routes-h' }, 'Routed services'), routesBox),
    h('section', { class: 'panel', 'aria-labelledby': 'route-detail-h' }, detailHeading, detailBox),
  );

  // The selected service's routes and its traffic, redrawn apart (the traffic changes more often).
  const detailRoutes = h('div');
  const detailTraffic = h('div');
  let focusedDetail = false;

  const refresh = async (): Promise<void> => {
    if (document.visibilityState === 'hidden') return;
    const [routesResult, hostsResult, detailResult] = await Promise.allSettled([
      api.get<RoutesList>('/api/v1/routes'),
      api.get<Host[]>('/api/v1/hosts'),
      selected ? api.get<ServiceRoutes>(`/api/v1/routes/${seg(selected)}`) : Promise.resolve(null),
    ]);
    if (!ctx.alive()) return;
    const list = routesResult.status === 'fulfilled' ? routesResult.value : null;
    const hosts = hostsResult.status === 'fulfilled' ? hostsResult.value : null;
    const routes = sortRoutes(list?.routes ?? []);
    const latencies = list?.latencies ?? [];

    if (hosts) redraw(regionsBox, JSON.stringify(hosts.map(hostKey)), () => regionsView(hosts));
    else if (hostsResult.status === 'rejected') showError(regionsBox, hostsResult.reason);

    if (list) {
      const regions = routingRegions(hosts ?? [], latencies, routes);
      redraw(matrixBox, JSON.stringify([regions, latencies]), () => matrixView(regions, list));
      redraw(routesBox, JSON.stringify([routes, selected]), () => routesView(routes, selected));
    } else if (routesResult.status === 'rejected') {
      showError(matrixBox, routesResult.reason);
      showError(routesBox, routesResult.reason);
    }

    if (selected) {
      if (detailResult.status === 'fulfilled' && detailResult.value) {
        const { traffic, ...detail } = detailResult.value;
        const names = new Map((hosts ?? []).map((host) => [host.id, host.hostname || host.id]));
        if (detailRoutes.parentNode !== detailBox) {
          delete detailBox.dataset.key;
          fill(detailBox, detailRoutes, h('h3', null, 'Last 5 minutes through the ingresses'), detailTraffic);
        }
        redraw(detailRoutes, JSON.stringify([detail, [...names]]), () => detailView(detail, names));
        redraw(detailTraffic, JSON.stringify(traffic), () => trafficView(traffic));
        if (!focusedDetail) {
          focusedDetail = true;
          detailHeading.focus();
        }
      } else if (detailResult.status === 'rejected') {
        showError(detailBox, detailResult.reason);
      }
    }
    updated.textContent = list || hosts
      ? `every ${REFRESH_MS / 1000} s · updated ${formatTime(Date.now()).slice(11)}`
      : `refresh failed; retrying every ${REFRESH_MS / 1000} s`;
  };

  const onVisible = () => {
    if (document.visibilityState === 'visible') void refresh();
  };
  document.addEventListener('visibilitychange', onVisible);
  ctx.onCleanup(() => document.removeEventListener('visibilitychange', onVisible));
  ctx.every(REFRESH_MS, refresh, true);
}

/** What of a host the regions panel shows (its live metrics change every report and do not count). */
function hostKey(host: Host): unknown[] {
  const ingress = hostIngress(host);
  return [host.id, host.hostname, host.region, host.status, ingress.http, ingress.https];
}

function regionsView(hosts: Host[]): Child {
  const groups = groupByRegion(hosts);
  if (groups.length === 0) return h('p', { class: 'empty' }, 'No hosts yet.');
  return groups.map((group) =>
    h('div', { class: 'region', testid: 'routing-region', 'data-region': group.region },
      h('h3', null, group.region, ' ', h('span', { class: 'muted' }, `${group.online}/${group.hosts.length} online`)),
      table(['Host', 'Status', 'Ingress HTTP', 'Ingress HTTPS'],
        group.hosts.map((host) => {
          const ingress = hostIngress(host);
          return tr({ testid: 'routing-host', 'data-host-id': host.id, 'data-status': host.status },
            hostLink(host.id, host.hostname || host.id),
            statusBadge(host.status),
            td({ class: 'mono nowrap', title: ingress.known ? null : 'The agent has not reported its ingress' }, ingress.http),
            td({ class: 'mono nowrap' }, ingress.https));
        }),
        { class: 'compact' })));
}

function matrixView(regions: string[], list: RoutesList): Child {
  if (regions.length === 0) return h('p', { class: 'empty' }, 'No regions yet.');
  const rows = latencyMatrix(regions, list.latencies);
  return [
    h('div', { class: 'table-wrap' },
      h('table', { class: 'compact latency-matrix', testid: 'latency-table', 'aria-describedby': 'latency-note' },
        h('thead', null, h('tr', null,
          h('td', { class: 'corner' }, h('span', { class: 'muted small' }, 'from ↓ to →')),
          regions.map((region) => h('th', { scope: 'col' }, region)))),
        h('tbody', null, rows.map((row) =>
          h('tr', { 'data-from': row.from },
            h('th', { scope: 'row' }, row.from),
            row.cells.map((cell) =>
              h('td', {
                class: `num${cell.self ? ' self' : ''}${cell.rttMs === null ? ' muted' : ''}`,
                testid: 'latency-cell',
                'data-to': cell.to,
                'data-rtt-ms': cell.rttMs === null ? null : String(cell.rttMs),
                title: cell.self ? 'the same region' : cell.rttMs === null ? `${row.from} → ${cell.to}: not measured` : null,
              }, formatLatency(cell.rttMs)))))))),
    h('p', { class: 'muted small', id: 'latency-note' },
      'Smoothed TCP round trip from the ingresses of the row’s region to those of the column’s region; — where not measured.',
      regions.length > 1 && list.latencies.length === 0 ? ' Nothing is measured yet: agents time the ingresses of other regions every 10 s.' : null),
  ];
}

function regionBadges(route: RouteSummary): Child {
  const states = servingStates(route);
  if (states.length === 0) return h('span', { class: 'muted' }, 'no region');
  return h('span', { class: 'labels' }, states.map((s) =>
    s.serving
      ? badge(s.region, 'ok', { title: `${s.region} serves ${route.service}`, 'data-region': s.region, 'data-serving': 'true' })
      : badge(`${s.region}: answers 503`, 'bad', { title: `${s.region}’s ingresses answer 503 for ${route.service}`, 'data-region': s.region, 'data-serving': 'false' })));
}

function routesView(routes: RouteSummary[], selected: string): Child {
  return table(['Service', 'Hostnames', 'Paths', 'Region policy', 'Regions'],
    routes.map((route) => {
      const current = route.service === selected;
      return tr({ testid: 'route-row', 'data-service': route.service, 'data-serving': route.serving.join(','), 'data-not-serving': route.not_serving.join(','), class: current ? 'selected' : null },
        td(null, h('a', { href: routeHash('routing', [route.service]), 'aria-current': current ? 'true' : null, testid: 'route-select' }, route.service)),
        td({ class: 'wrap' }, route.hostnames.map((name) => h('div', null, h('code', null, name)))),
        td(null, route.paths.map((path) => h('div', null, h('code', null, path)))),
        route.regions,
        regionBadges(route));
    }),
    {},
    'No routed service: add a route: section (hostnames, port) to a service spec and apply it.');
}

const STATE_TEXT: Record<WeightBar['state'], [string, string, string]> = {
  serving: ['serving', 'ok', 'takes new requests'],
  draining: ['draining', 'warn', 'weight 0: stopping, finishes the requests it has'],
  standby: ['standby', 'neutral', 'weight 0: used only when no weighted backend answers'],
};

function weightCell(bar: WeightBar): HTMLTableCellElement {
  const fillBar = h('span', { class: `bar-fill weight-fill${bar.state === 'serving' ? '' : ' weight-zero'}` });
  fillBar.style.width = `${bar.width}%`;
  return td({ class: 'nowrap' },
    h('span', { class: 'usage', title: `${bar.label} of this region’s requests` },
      h('span', { class: 'bar', 'aria-hidden': 'true' }, fillBar),
      h('span', { class: 'usage-text', testid: 'backend-weight' }, bar.label)));
}

function regionView(region: RegionRoutes, service: string, hostNames: Map<string, string>): HTMLElement {
  const bars = weightBars(region.backends);
  return h('div', { class: `route-region ${region.serving ? 'route-serving' : 'route-down'}`, testid: 'route-region', 'data-region': region.region, 'data-serving': String(region.serving) },
    h('h3', null, region.region, ' ',
      region.serving
        ? badge('serving', 'ok', { testid: 'route-region-state' })
        : badge('answers 503', 'bad', { testid: 'route-region-state' })),
    h('p', { class: 'explanation', testid: 'route-explanation' }, region.explanation),
    region.serving
      ? null
      : h('div', { class: 'notice notice-error', testid: 'route-region-503' },
          `${region.region}’s ingresses answer 503 Service Unavailable (Retry-After: 5) for ${service}: no backend there carries any weight.`),
    bars.length === 0
      ? h('p', { class: 'empty' }, 'No backend.')
      : table(['Weight', 'Revision', 'State', 'Allocation', 'Host', 'Region', 'Address'],
          bars.map((bar) => {
            const b = bar.backend;
            const [text, kind, title] = STATE_TEXT[bar.state];
            return tr({ testid: 'route-backend', 'data-allocation': b.allocation, 'data-weight-ppm': String(b.weight_ppm), 'data-state': bar.state, class: bar.state === 'serving' ? null : 'weight-zero-row' },
              weightCell(bar),
              `rev ${b.revision}`,
              td(null, badge(text, kind, { title })),
              h('code', null, b.allocation),
              hostLink(b.host, hostNames.get(b.host) ?? b.host),
              b.region,
              h('code', null, b.address));
          }),
          { class: 'compact' }));
}

function detailView(detail: Omit<ServiceRoutes, 'traffic'>, hostNames: Map<string, string>): Child {
  const regions = sortRegionRoutes(detail.by_region);
  return [
    dl([
      ['Service', serviceLink(detail.service)],
      ['Hostnames', h('span', { class: 'labels' }, detail.hostnames.map((name) => h('code', null, name)))],
      ['Paths', h('span', { class: 'labels' }, detail.paths.map((path) => h('code', null, path)))],
      ['Region policy', detail.regions],
      ['TLS', h('span', { testid: 'route-tls' }, detail.tls)],
    ]),
    regions.length === 0
      ? h('p', { class: 'empty' }, 'No region routes this service yet: no host of a region has reported its ingress.')
      : regions.map((region) => regionView(region, detail.service, hostNames)),
  ];
}

function trafficView(traffic: RevisionTraffic[]): Child {
  return table(['Revision', 'Requests', 'Errors', 'Error rate', 'p50', 'p99'],
    trafficRows(traffic).map((t) =>
      tr({ testid: 'route-traffic', 'data-revision': String(t.revision) },
        `rev ${t.revision}`,
        td({ class: 'num' }, String(t.requests)),
        td({ class: 'num' }, String(t.errors)),
        td({ class: `num${t.failing ? ' bad-text' : ''}` }, t.errorRate),
        td({ class: 'num' }, t.p50),
        td({ class: 'num' }, t.p99))),
    { class: 'compact', testid: 'route-traffic-table' },
    'No request through the ingresses in the last 5 minutes.');
}
