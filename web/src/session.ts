import type { Role, Scope, Session } from './types';

/** POST /api/v1/session answers `username`, GET answers `name` and `kind`. */
export interface SessionJson {
  csrf_token?: string;
  name?: string;
  username?: string;
  kind?: 'user' | 'token';
  role?: Role;
  scope?: Scope | null;
  expires_at_ms?: number;
}

export function normaliseSession(json: SessionJson): Session {
  return {
    name: json.name ?? json.username ?? '',
    kind: json.kind ?? 'user',
    role: json.role ?? 'viewer',
    scope: {
      regions: json.scope?.regions ?? [],
      service_prefixes: json.scope?.service_prefixes ?? [],
    },
    csrfToken: json.csrf_token ?? '',
    expiresAtMs: json.expires_at_ms,
  };
}
