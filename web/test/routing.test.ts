import { describe, expect, it } from 'vitest';
import {
  backendState, errorRate, formatLatency, formatWeight, hostIngress, ingressAddress, latencyMatrix, routingRegions,
  servingStates, sortRegionRoutes, sortRoutes, trafficRows, weightBars,
} from '../src/routing';
import type { Host, Inventory, RegionRoutes, RouteBackend, RouteSummary } from '../src/types';

function host(id: string, region: string, inventory: Partial<Inventory> | null = null): Host {
  return {
    id, hostname: `${id}.example`, region, labels: {}, status: 'online', last_seen_ms: 0, enrolled_at_ms: 0, interval_seconds: 10,
    certificate_not_after_ms: 0, runtime_error: '', latest: null,
    inventory: inventory && {
      hostname: id, os: '', os_version: '', kernel: '', arch: '', cpu_count: 1, cpu_model: '', memory_bytes: 0, swap_bytes: 0,
      disks: [], agent_version: '', docker_available: true, docker_version: '', docker_error: '', ...inventory,
    },
  };
}

function backend(allocation: string, region: string, revision: number, weightPpm: number): RouteBackend {
  return {
    allocation, host: `h-${allocation}`, region, revision, address: `10.0.0.1:${30000 + revision}`,
    weight_ppm: weightPpm, weight_percent: weightPpm / 10_000,
  };
}

function route(service: string, serving: string[], notServing: string[] = []): RouteSummary {
  return { service, hostnames: [`${service}.apps.test`], paths: ['/'], regions: 'nearest', serving, not_serving: notServing };
}

const lat = (from: string, to: string, rtt: number) => ({ from_region: from, to_region: to, rtt_ms: rtt });

describe('regions and the latency matrix', () => {
  it('collects the regions of hosts, round trips and routes, sorted, without the empty one', () => {
    expect(routingRegions(
      [host('a', 'us-east'), host('b', ''), host('c', 'eu-west')],
      [lat('eu-west', 'ap-south', 80)],
      [route('web', ['eu-west'], ['sa-east'])],
    )).toEqual(['ap-south', 'eu-west', 'sa-east', 'us-east']);
    expect(routingRegions([], [])).toEqual([]);
  });

  it('puts each measured pair in its cell and leaves the rest (and the diagonal) unmeasured', () => {
    const rows = latencyMatrix(['eu-west', 'us-east', 'ap-south'], [lat('eu-west', 'us-east', 81.5), lat('us-east', 'eu-west', 79), lat('ap-south', 'nowhere', 3)]);
    expect(rows.map((r) => [r.from, r.cells.map((c) => c.rttMs)])).toEqual([
      ['eu-west', [null, 81.5, null]],
      ['us-east', [79, null, null]],
      ['ap-south', [null, null, null]],
    ]);
    expect(rows[1].cells.map((c) => c.self)).toEqual([false, true, false]);
    expect(rows[0].cells.map((c) => c.to)).toEqual(['eu-west', 'us-east', 'ap-south']);
  });

  it('formats round trips with a dash when unmeasured', () => {
    expect(formatLatency(null)).toBe('—');
    expect(formatLatency(Number.NaN)).toBe('—');
    expect(formatLatency(0.4234)).toBe('0.42 ms');
    expect(formatLatency(4.25)).toBe('4.3 ms');
    expect(formatLatency(81.5)).toBe('82 ms');
    expect(formatLatency(0)).toBe('0.00 ms');
  });
});

describe('ingress addresses', () => {
  it('joins the advertise address and the port, brackets IPv6, says off for port 0', () => {
    expect(ingressAddress('10.1.0.5', 7480)).toBe('10.1.0.5:7480');
    expect(ingressAddress('fd00::5', 8443)).toBe('[fd00::5]:8443');
    expect(ingressAddress('10.1.0.5', 0)).toBe('off');
    expect(ingressAddress('', 7480)).toBe('port 7480');
  });
  it('reads a host inventory, unknown before the agent reports it', () => {
    expect(hostIngress(host('a', 'eu', { advertise_address: '10.1.0.5', ingress_http_port: 7480, ingress_https_port: 0 })))
      .toEqual({ http: '10.1.0.5:7480', https: 'off', known: true });
    expect(hostIngress(host('a', 'eu', {}))).toEqual({ http: '—', https: '—', known: false });
    expect(hostIngress(host('a', 'eu', null)).known).toBe(false);
  });
});

describe('weights', () => {
  it('formats shares as the CLI does', () => {
    expect(formatWeight(100)).toBe('100 %');
    expect(formatWeight(12.5)).toBe('12.5 %');
    expect(formatWeight(33.33333)).toBe('33.3 %');
    expect(formatWeight(49.98)).toBe('50 %');
    expect(formatWeight(0)).toBe('0 %');
  });

  it('marks weight 0 as standby or draining as the control plane says', () => {
    const all = [
      { ...backend('a', 'eu-west', 8, 1_000_000), standby: false },
      { ...backend('old', 'eu-west', 7, 0), standby: false },
      { ...backend('far', 'us-east', 8, 0), standby: true },
      { ...backend('near', 'eu-west', 8, 0), standby: true },
      { ...backend('gone', 'us-east', 7, 0), standby: false },
    ];
    expect(all.map((b) => backendState(b, all))).toEqual(['serving', 'draining', 'standby', 'standby', 'draining']);
  });

  it('without the flag, takes weight 0 as draining beside weighted backends of its region, else standby', () => {
    const all = [backend('a', 'eu-west', 8, 1_000_000), backend('old', 'eu-west', 7, 0), backend('far', 'us-east', 8, 0)];
    expect(all.map((b) => backendState(b, all))).toEqual(['serving', 'draining', 'standby']);
  });

  it('orders bars heaviest first, weight-0 last, and clamps the widths', () => {
    const bars = weightBars([
      backend('z-old', 'eu-west', 7, 0),
      backend('b', 'eu-west', 7, 450_000),
      backend('c', 'eu-west', 8, 100_000),
      backend('a', 'eu-west', 7, 450_000),
      { ...backend('odd', 'eu-west', 7, 2_000_000) },
    ]);
    expect(bars.map((b) => b.backend.allocation)).toEqual(['odd', 'a', 'b', 'c', 'z-old']);
    expect(bars.map((b) => b.width)).toEqual([100, 45, 45, 10, 0]);
    expect(bars.map((b) => b.label)).toEqual(['200 %', '45 %', '45 %', '10 %', '0 %']);
    expect(bars.map((b) => b.state)).toEqual(['serving', 'serving', 'serving', 'serving', 'draining']);
  });

  it('falls back to parts per million without a percent', () => {
    const b = { ...backend('a', 'eu-west', 1, 125_000), weight_percent: Number.NaN };
    expect(weightBars([b])[0]).toMatchObject({ width: 12.5, label: '12.5 %', state: 'serving' });
  });

  it('gives one 100 % bar to a lone allocation', () => {
    expect(weightBars([backend('only', 'eu-west', 1, 1_000_000)]).map((b) => [b.label, b.width, b.state])).toEqual([['100 %', 100, 'serving']]);
  });
});

describe('sorting and serving states', () => {
  it('sorts routes by service and regions by name', () => {
    expect(sortRoutes([route('web', []), route('api', []), route('shop', [])]).map((r) => r.service)).toEqual(['api', 'shop', 'web']);
    const region = (name: string): RegionRoutes => ({ region: name, serving: true, explanation: '', backends: [] });
    expect(sortRegionRoutes([region('us-east'), region('eu-west')]).map((r) => r.region)).toEqual(['eu-west', 'us-east']);
  });
  it('merges serving and not serving regions by name', () => {
    expect(servingStates(route('web', ['us-east', 'eu-west'], ['ap-south']))).toEqual([
      { region: 'ap-south', serving: false },
      { region: 'eu-west', serving: true },
      { region: 'us-east', serving: true },
    ]);
  });
});

describe('traffic', () => {
  it('computes error rates only with requests', () => {
    expect(errorRate(200, 3)).toBe(1.5);
    expect(errorRate(0, 0)).toBeNull();
    expect(errorRate(10, 0)).toBe(0);
  });
  it('lists revisions newest first with rates and latencies', () => {
    const rows = trafficRows([
      { revision: 7, requests: 9000, errors: 0, p50_ms: 1.234, p99_ms: 12.9 },
      { revision: 8, requests: 1000, errors: 25, p50_ms: 0.5, p99_ms: 150 },
      { revision: 6, requests: 0, errors: 0, p50_ms: 0, p99_ms: 0 },
      { revision: 9, requests: 10_000, errors: 1, p50_ms: 2, p99_ms: 3 },
    ]);
    expect(rows.map((r) => [r.revision, r.errorRate, r.p50, r.p99, r.failing])).toEqual([
      [9, '0.01 %', '2.0 ms', '3.0 ms', true],
      [8, '2.5 %', '0.50 ms', '150 ms', true],
      [7, '0.0 %', '1.2 ms', '13 ms', false],
      [6, '—', '—', '—', false],
    ]);
  });
});
