// Pure decisions of the dashboard (unit-tested in test/logic.test.ts).

import type { BackupPolicy, Host, Role } from './types';
import { ratioPercent } from './format';

// ---- roles ----

/** What the UI may offer; mirrors `Action::least_role` in control-plane/src/auth.rs. */
export type Permission =
  | 'deploy'
  | 'writeSecrets'
  | 'revealSecret'
  | 'readAudit'
  | 'testPolicies'
  | 'managePolicies'
  | 'manageAlerts'
  | 'manageBackups'
  | 'restoreInPlace'
  | 'manageUsers'
  | 'manageTokens';

const LEAST_ROLE: Record<Permission, Role> = {
  deploy: 'operator',
  writeSecrets: 'operator',
  readAudit: 'operator',
  testPolicies: 'operator',
  manageAlerts: 'operator',
  manageBackups: 'operator',
  revealSecret: 'admin',
  managePolicies: 'admin',
  restoreInPlace: 'admin',
  manageUsers: 'admin',
  manageTokens: 'admin',
};

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function can(role: Role | undefined, permission: Permission): boolean {
  if (!role || !(role in RANK)) return false;
  return RANK[role] >= RANK[LEAST_ROLE[permission]];
}

// ---- hosts ----

export interface RegionGroup {
  region: string;
  hosts: Host[];
  online: number;
}

export const NO_REGION = '(no region)';

/** Hosts grouped by region (regions sorted by name, hosts by hostname). */
export function groupByRegion(hosts: Host[]): RegionGroup[] {
  const groups = new Map<string, Host[]>();
  for (const host of hosts) {
    const region = host.region || NO_REGION;
    const list = groups.get(region);
    if (list) list.push(host);
    else groups.set(region, [host]);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([region, list]) => {
      const sorted = [...list].sort(
        (a, b) => a.hostname.localeCompare(b.hostname) || a.id.localeCompare(b.id),
      );
      return { region, hosts: sorted, online: sorted.filter((h) => h.status === 'online').length };
    });
}

export type LabelFilter = { ok: true; labels: Record<string, string> } | { ok: false; error: string };

/**
 * Parses a label filter typed by a person: `key=value` pairs separated by
 * commas or spaces. Empty text matches everything.
 */
export function parseLabelFilter(text: string): LabelFilter {
  const labels: Record<string, string> = {};
  for (const raw of text.split(/[,\s]+/)) {
    const pair = raw.trim();
    if (!pair) continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      return { ok: false, error: `"${pair}" is not key=value, e.g. role=web` };
    }
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (key in labels && labels[key] !== value) {
      return { ok: false, error: `label ${key} is given twice with different values` };
    }
    labels[key] = value;
  }
  return { ok: true, labels };
}

/** The API's `labels=` form of a filter: `k=v,k2=v2`. */
export function labelsParam(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

export function hostMatches(host: Host, region: string, labels: Record<string, string>): boolean {
  if (region && (host.region || NO_REGION) !== region) return false;
  return Object.entries(labels).every(([k, v]) => host.labels?.[k] === v);
}

export interface HostUsage {
  cpu: number | null;
  memory: number | null;
  /** The fullest disk. */
  disk: number | null;
}

export function hostUsage(host: Host): HostUsage {
  const s = host.latest;
  if (!s) return { cpu: null, memory: null, disk: null };
  let disk: number | null = null;
  for (const d of s.disks ?? []) {
    const pct = ratioPercent(d.used_bytes, d.total_bytes);
    if (pct !== null && (disk === null || pct > disk)) disk = pct;
  }
  return {
    cpu: Number.isFinite(s.cpu_percent) ? s.cpu_percent : null,
    memory: ratioPercent(s.memory_used_bytes, s.memory_total_bytes),
    disk,
  };
}

/** A usage level for colouring: ok below 75 %, warn below 90 %, high above. */
export function usageLevel(percent: number | null): 'none' | 'ok' | 'warn' | 'high' {
  if (percent === null) return 'none';
  if (percent >= 90) return 'high';
  if (percent >= 75) return 'warn';
  return 'ok';
}

// ---- backups ----

export interface RpoStanding {
  /** Seconds since the last successful backup, null when there is none. */
  ageSeconds: number | null;
  rpoSeconds: number;
  /** age / RPO (1 = exactly at the RPO), null when unknown. */
  ratio: number | null;
  level: 'ok' | 'warn' | 'overdue' | 'never';
}

/** How a policy's newest success stands against its RPO, now. */
export function rpoStanding(policy: BackupPolicy, nowMs: number): RpoStanding {
  const rpoSeconds = policy.rpo_seconds;
  const last = policy.status?.last_success_at_ms ?? 0;
  if (!last || last <= 0) return { ageSeconds: null, rpoSeconds, ratio: null, level: 'never' };
  const ageSeconds = Math.max(0, Math.floor((nowMs - last) / 1000));
  if (!rpoSeconds || rpoSeconds <= 0) return { ageSeconds, rpoSeconds, ratio: null, level: 'ok' };
  const ratio = ageSeconds / rpoSeconds;
  const level = ratio > 1 ? 'overdue' : ratio > 0.8 ? 'warn' : 'ok';
  return { ageSeconds, rpoSeconds, ratio, level };
}

/** Restore target text: `database:NAME` or `dir:/path`; null with a reason otherwise. */
export function checkRestoreTarget(text: string): string | null {
  const t = text.trim();
  const m = /^(database|dir):(.+)$/.exec(t);
  if (!m) return 'write the target as database:NAME or dir:/path';
  if (m[1] === 'dir' && !m[2].startsWith('/')) return 'a directory target must be an absolute path, e.g. dir:/srv/restored';
  return null;
}

// ---- specs ----

export interface FieldError {
  path: string;
  message: string;
}

export interface SpecErrors {
  summary: string;
  fields: FieldError[];
  other: string[];
}

/**
 * Splits an apply error into the lines naming a field (`spec.replicas: -1 is
 * out of range, …`) and the rest. The control plane sends
 * `the spec is invalid:\n<path>: <message>\n…`.
 */
export function parseSpecErrors(message: string): SpecErrors {
  const lines = message.split('\n').map((l) => l.trim()).filter(Boolean);
  const fields: FieldError[] = [];
  const other: string[] = [];
  const summary = lines.length > 0 ? lines[0] : message;
  for (const line of lines.slice(1)) {
    const m = /^(spec(?:[.[][^\s:]*)?):\s+(.+)$/.exec(line);
    if (m) fields.push({ path: m[1], message: m[2] });
    else other.push(line);
  }
  // A one-line error that names a field.
  if (lines.length === 1) {
    const m = /^(spec(?:[.[][^\s:]*)?):\s+(.+)$/.exec(lines[0]);
    if (m) fields.push({ path: m[1], message: m[2] });
  }
  return { summary, fields, other };
}

// ---- deployments ----

export type PhaseKind = 'running' | 'waiting' | 'succeeded' | 'failed' | 'other';

/** Phases: running, paused, awaiting promotion, succeeded, failed: …, reverting, reverted, cancelled. */
export function phaseKind(phase: string, finished: boolean): PhaseKind {
  const p = phase.toLowerCase();
  if (p.startsWith('succeeded')) return 'succeeded';
  if (p.startsWith('failed') || p.startsWith('revert') || p.startsWith('cancel')) return 'failed';
  if (p.startsWith('paused') || p.startsWith('awaiting')) return 'waiting';
  if (!finished) return 'running';
  return 'other';
}

export function progressPercent(healthy: number, wanted: number): number {
  if (!wanted || wanted <= 0) return healthy > 0 ? 100 : 0;
  return Math.max(0, Math.min(100, Math.round((healthy / wanted) * 100)));
}

// ---- secrets ----

/** UTF-8 text → base64 (the `value_base64` of POST /api/v1/secrets). */
export function utf8ToBase64(text: string): string {
  return bytesToBase64(new TextEncoder().encode(text));
}

export function bytesToBase64(bytes: Uint8Array): string {
  let binary = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

/** base64 → text when it is valid UTF-8, else null (binary). */
export function base64ToUtf8(value: string): string | null {
  const binary = atob(value);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** Comma- or newline-separated list, trimmed, without blanks. */
export function splitList(text: string): string[] {
  return text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter(Boolean);
}
