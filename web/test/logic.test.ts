import { describe, expect, it } from 'vitest';
import {
  base64ToUtf8, can, checkRestoreTarget, groupByRegion, hostMatches, hostUsage, labelsParam, NO_REGION,
  parseLabelFilter, parseSpecErrors, phaseKind, progressPercent, rpoStanding, splitList, utf8ToBase64,
} from '../src/logic';
import type { BackupPolicy, Host } from '../src/types';

function host(id: string, region: string, labels: Record<string, string> = {}, status = 'online'): Host {
  return {
    id, hostname: `${id}.example`, region, labels, status, last_seen_ms: 0, enrolled_at_ms: 0, interval_seconds: 10,
    certificate_not_after_ms: 0, runtime_error: '', inventory: null, latest: null,
  };
}

describe('groupByRegion', () => {
  it('groups, sorts regions and hosts, counts online hosts', () => {
    const groups = groupByRegion([host('b', 'us-east'), host('c', 'eu-west', {}, 'offline'), host('a', 'eu-west'), host('d', '')]);
    expect(groups.map((g) => g.region)).toEqual([NO_REGION, 'eu-west', 'us-east']);
    const eu = groups[1];
    expect(eu.hosts.map((h) => h.id)).toEqual(['a', 'c']);
    expect(eu.online).toBe(1);
  });
  it('is empty for no hosts', () => {
    expect(groupByRegion([])).toEqual([]);
  });
});

describe('label filter', () => {
  it('parses key=value pairs separated by commas or spaces', () => {
    expect(parseLabelFilter('role=web, tier=front')).toEqual({ ok: true, labels: { role: 'web', tier: 'front' } });
    expect(parseLabelFilter('role=web tier=front')).toEqual({ ok: true, labels: { role: 'web', tier: 'front' } });
    expect(parseLabelFilter('  ')).toEqual({ ok: true, labels: {} });
    expect(parseLabelFilter('empty=')).toEqual({ ok: true, labels: { empty: '' } });
  });
  it('explains what is wrong', () => {
    const r = parseLabelFilter('role');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain('key=value');
    expect(parseLabelFilter('=web').ok).toBe(false);
    expect(parseLabelFilter('a=1,a=2').ok).toBe(false);
  });
  it('serialises for the API and matches hosts', () => {
    expect(labelsParam({ role: 'web', tier: 'front' })).toBe('role=web,tier=front');
    const h = host('a', 'eu-west', { role: 'web', tier: 'front' });
    expect(hostMatches(h, '', {})).toBe(true);
    expect(hostMatches(h, 'eu-west', { role: 'web' })).toBe(true);
    expect(hostMatches(h, 'us-east', {})).toBe(false);
    expect(hostMatches(h, '', { role: 'db' })).toBe(false);
    expect(hostMatches(host('x', ''), NO_REGION, {})).toBe(true);
  });
});

describe('hostUsage', () => {
  it('takes CPU, memory and the fullest disk from the latest sample', () => {
    const h = host('a', 'r');
    expect(hostUsage(h)).toEqual({ cpu: null, memory: null, disk: null });
    h.latest = {
      timestamp_ms: 1, cpu_percent: 12.5, load1: 0, load5: 0, load15: 0,
      memory_used_bytes: 1, memory_available_bytes: 3, memory_total_bytes: 4, swap_used_bytes: 0, swap_total_bytes: 0,
      disks: [{ mount_point: '/', used_bytes: 50, total_bytes: 100 }, { mount_point: '/data', used_bytes: 90, total_bytes: 100 }],
      net_rx_bytes_per_second: 0, net_tx_bytes_per_second: 0, uptime_seconds: 0, process_count: 0,
    };
    expect(hostUsage(h)).toEqual({ cpu: 12.5, memory: 25, disk: 90 });
  });
});

describe('rpoStanding', () => {
  const policy = (last: number, rpo = 3600): BackupPolicy => ({
    name: 'p', source_kind: 'postgres', host_id: 'h', schedule: '', verify_schedule: '', rpo_seconds: rpo, destinations: [],
    created_at_ms: 0, updated_at_ms: 0, updated_by: '', spec: '',
    status: { state: 'ok', reason: '', last_success_at_ms: last, age_seconds: 0, last_failure_at_ms: 0, last_error: '',
      last_verified_at_ms: 0, last_verify: '', measured_rto_ms: 0, next_run_at_ms: 0, next_verify_at_ms: 0 },
  });
  const now = 10_000_000;
  it('is never without a success', () => {
    expect(rpoStanding(policy(0), now)).toEqual({ ageSeconds: null, rpoSeconds: 3600, ratio: null, level: 'never' });
  });
  it('compares the age with the RPO', () => {
    expect(rpoStanding(policy(now - 1800_000), now)).toMatchObject({ ageSeconds: 1800, ratio: 0.5, level: 'ok' });
    expect(rpoStanding(policy(now - 3000_000), now).level).toBe('warn');
    expect(rpoStanding(policy(now - 3600_000), now).level).toBe('warn');
    expect(rpoStanding(policy(now - 7200_000), now)).toMatchObject({ ratio: 2, level: 'overdue' });
  });
  it('has no ratio without an RPO', () => {
    expect(rpoStanding(policy(now - 1000, 0), now)).toMatchObject({ ratio: null, level: 'ok' });
  });
});

describe('parseSpecErrors', () => {
  it('lists every field error of a validation failure', () => {
    const msg = 'the spec is invalid:\nspec.replicas: -1 is out of range, write 0 to 1000\nspec.ports[1]: host port 8080/tcp is already published by spec.ports[0]\nspec.health_check.http.path: "healthz" is not a URL path, write e.g. /healthz';
    const r = parseSpecErrors(msg);
    expect(r.summary).toBe('the spec is invalid:');
    expect(r.fields).toEqual([
      { path: 'spec.replicas', message: '-1 is out of range, write 0 to 1000' },
      { path: 'spec.ports[1]', message: 'host port 8080/tcp is already published by spec.ports[0]' },
      { path: 'spec.health_check.http.path', message: '"healthz" is not a URL path, write e.g. /healthz' },
    ]);
    expect(r.other).toEqual([]);
  });
  it('keeps other errors aside', () => {
    const r = parseSpecErrors('policies refused web:\nrequire-limits: no memory limit');
    expect(r.fields).toEqual([]);
    expect(r.other).toEqual(['require-limits: no memory limit']);
    expect(parseSpecErrors('no service named "x"').fields).toEqual([]);
  });
});

describe('deployments', () => {
  it('classifies phases', () => {
    expect(phaseKind('succeeded', true)).toBe('succeeded');
    expect(phaseKind('failed: health checks', true)).toBe('failed');
    expect(phaseKind('reverted', true)).toBe('failed');
    expect(phaseKind('awaiting promotion', false)).toBe('waiting');
    expect(phaseKind('running', false)).toBe('running');
  });
  it('computes progress', () => {
    expect(progressPercent(1, 3)).toBe(33);
    expect(progressPercent(5, 3)).toBe(100);
    expect(progressPercent(0, 0)).toBe(0);
  });
});

describe('roles', () => {
  it('mirrors the server least roles', () => {
    expect(can('viewer', 'deploy')).toBe(false);
    expect(can('operator', 'deploy')).toBe(true);
    expect(can('operator', 'revealSecret')).toBe(false);
    expect(can('admin', 'revealSecret')).toBe(true);
    expect(can('viewer', 'readAudit')).toBe(false);
    expect(can(undefined, 'deploy')).toBe(false);
  });
});

describe('secrets and misc', () => {
  it('base64-encodes UTF-8 and back', () => {
    expect(utf8ToBase64('hunter2')).toBe('aHVudGVyMg==');
    expect(base64ToUtf8(utf8ToBase64('pässwörd ✓'))).toBe('pässwörd ✓');
    expect(base64ToUtf8('/w==')).toBeNull();
  });
  it('checks restore targets', () => {
    expect(checkRestoreTarget('database:crm_restored')).toBeNull();
    expect(checkRestoreTarget('dir:/srv/x')).toBeNull();
    expect(checkRestoreTarget('dir:relative')).toContain('absolute');
    expect(checkRestoreTarget('crm')).toContain('database:NAME');
  });
  it('splits lists', () => {
    expect(splitList('a, b\nc,,')).toEqual(['a', 'b', 'c']);
  });
});
