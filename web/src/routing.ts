// Pure derivations of the Routing page (unit-tested in test/routing.test.ts):
// the regions and their latency matrix, ingress addresses, weight bars and
// the draining/standby marks, traffic rows, and the orders things are shown in.

import { formatPercent } from './format';
import type { Host, RegionLatency, RegionRoutes, RevisionTraffic, RouteBackend, RouteSummary } from './types';

const DASH = '—';

/** Every region worth showing, sorted: those of the hosts, of the measured round trips and of the routes. */
export function routingRegions(hosts: Host[], latencies: RegionLatency[], routes: RouteSummary[] = []): string[] {
  const names = new Set<string>();
  for (const host of hosts) if (host.region) names.add(host.region);
  for (const l of latencies) {
    if (l.from_region) names.add(l.from_region);
    if (l.to_region) names.add(l.to_region);
  }
  for (const r of routes) for (const region of [...r.serving, ...r.not_serving]) if (region) names.add(region);
  return [...names].sort((a, b) => a.localeCompare(b));
}

export interface LatencyCell {
  to: string;
  /** The measured round trip, null when the pair is not measured (or is the region itself). */
  rttMs: number | null;
  self: boolean;
}

export interface LatencyRow {
  from: string;
  cells: LatencyCell[];
}

/** A from × to matrix over `regions`; pairs the control plane has not measured are null. */
export function latencyMatrix(regions: string[], latencies: RegionLatency[]): LatencyRow[] {
  const measured = new Map<string, number>();
  for (const l of latencies) {
    if (Number.isFinite(l.rtt_ms)) measured.set(`${l.from_region}\u0000${l.to_region}`, l.rtt_ms);
  }
  return regions.map((from) => ({
    from,
    cells: regions.map((to) => ({
      to,
      self: from === to,
      rttMs: from === to ? null : (measured.get(`${from}\u0000${to}`) ?? null),
    })),
  }));
}

/** A round trip or latency in milliseconds: 0.42 ms, 4.2 ms, 42 ms; null → "—". */
export function formatLatency(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return DASH;
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  return `${Math.round(ms)} ms`;
}

/** `address:port` of an ingress listener (IPv6 in brackets); `off` when its port is 0. */
export function ingressAddress(address: string | undefined, port: number | undefined): string {
  if (!port) return 'off';
  if (!address) return `port ${port}`;
  const hostPart = address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
  return `${hostPart}:${port}`;
}

export interface HostIngress {
  http: string;
  https: string;
  /** False before the agent reported its ingress (an older agent, or no inventory yet). */
  known: boolean;
}

export function hostIngress(host: Host): HostIngress {
  const inv = host.inventory;
  if (!inv || (inv.ingress_http_port === undefined && inv.ingress_https_port === undefined)) {
    return { http: DASH, https: DASH, known: false };
  }
  return {
    http: ingressAddress(inv.advertise_address, inv.ingress_http_port),
    https: ingressAddress(inv.advertise_address, inv.ingress_https_port),
    known: true,
  };
}

/** A share of a region's requests as the CLI prints it: 100 %, 12.5 %, 33.3 %, 0 %. */
export function formatWeight(percent: number): string {
  if (!Number.isFinite(percent)) return DASH;
  const rounded = Math.round(percent);
  return Math.abs(percent - rounded) < 0.05 ? `${rounded} %` : `${percent.toFixed(1)} %`;
}

/**
 * What a backend does in its region's table: `serving` (it has a weight),
 * `standby` (weight 0, used only when no weighted backend answers: held for
 * failover) or `draining` (weight 0: a stopping allocation finishing its
 * requests). The control plane says which weight-0 backends are standbys;
 * without that flag (an older control plane), a weight-0 backend is taken
 * as draining when others of its region carry traffic, else as a standby.
 */
export type BackendState = 'serving' | 'draining' | 'standby';

export function backendState(backend: RouteBackend, all: RouteBackend[]): BackendState {
  if (backend.weight_ppm > 0) return 'serving';
  if (typeof backend.standby === 'boolean') return backend.standby ? 'standby' : 'draining';
  return all.some((b) => b.region === backend.region && b.weight_ppm > 0) ? 'draining' : 'standby';
}

export interface WeightBar {
  backend: RouteBackend;
  /** The bar's width in percent, 0–100. */
  width: number;
  label: string;
  state: BackendState;
}

/** The percent of a backend: the server's `weight_percent`, else from parts per million. */
function backendPercent(b: RouteBackend): number {
  if (Number.isFinite(b.weight_percent)) return b.weight_percent;
  return Number.isFinite(b.weight_ppm) ? b.weight_ppm / 10_000 : 0;
}

/**
 * One bar per backend, those carrying traffic first (heaviest first), then
 * by region, newest revision and allocation, so rows keep their place
 * between refreshes unless the weights move.
 */
export function weightBars(backends: RouteBackend[]): WeightBar[] {
  return [...backends]
    .sort(
      (a, b) =>
        Number(b.weight_ppm > 0) - Number(a.weight_ppm > 0) ||
        b.weight_ppm - a.weight_ppm ||
        a.region.localeCompare(b.region) ||
        b.revision - a.revision ||
        a.allocation.localeCompare(b.allocation),
    )
    .map((backend) => {
      const percent = backendPercent(backend);
      return {
        backend,
        width: Math.max(0, Math.min(100, percent)),
        label: formatWeight(percent),
        state: backendState(backend, backends),
      };
    });
}

/** Routes by service name. */
export function sortRoutes(routes: RouteSummary[]): RouteSummary[] {
  return [...routes].sort((a, b) => a.service.localeCompare(b.service));
}

/** A route's regions with whether they serve it, by region name. */
export function servingStates(route: RouteSummary): { region: string; serving: boolean }[] {
  return [
    ...route.serving.map((region) => ({ region, serving: true })),
    ...route.not_serving.map((region) => ({ region, serving: false })),
  ].sort((a, b) => a.region.localeCompare(b.region));
}

/** A service's regions by name. */
export function sortRegionRoutes(regions: RegionRoutes[]): RegionRoutes[] {
  return [...regions].sort((a, b) => a.region.localeCompare(b.region));
}

/** errors / requests in percent, null without requests. */
export function errorRate(requests: number, errors: number): number | null {
  if (!Number.isFinite(requests) || requests <= 0 || !Number.isFinite(errors)) return null;
  return (Math.max(0, errors) / requests) * 100;
}

export interface TrafficRow {
  revision: number;
  requests: number;
  errors: number;
  errorRate: string;
  p50: string;
  p99: string;
  /** At least one error in the window. */
  failing: boolean;
}

/** The last five minutes per revision, newest revision first; latencies only where there were requests. */
export function trafficRows(traffic: RevisionTraffic[]): TrafficRow[] {
  return [...traffic]
    .sort((a, b) => b.revision - a.revision)
    .map((t) => {
      const rate = errorRate(t.requests, t.errors);
      return {
        revision: t.revision,
        requests: t.requests,
        errors: t.errors,
        errorRate: rate === null ? DASH : formatPercent(rate, rate > 0 && rate < 0.1 ? 2 : 1),
        p50: t.requests > 0 ? formatLatency(t.p50_ms) : DASH,
        p99: t.requests > 0 ? formatLatency(t.p99_ms) : DASH,
        failing: t.errors > 0,
      };
    });
}
