import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, buildHeaders, errorMessage, isMutating, onUnauthorized, queryString, seg, setCsrfToken, unwrapList } from '../src/api';
import { normaliseSession } from '../src/session';
import { parseRoute, routeHash } from '../src/router';

describe('CSRF header', () => {
  it('is sent only on mutating methods', () => {
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE', 'post']) {
      expect(isMutating(m)).toBe(true);
      expect(buildHeaders(m, 'tok')['X-CSRF-Token']).toBe('tok');
    }
    for (const m of ['GET', 'HEAD', 'OPTIONS']) {
      expect(isMutating(m)).toBe(false);
      expect(buildHeaders(m, 'tok')).not.toHaveProperty('X-CSRF-Token');
    }
    expect(buildHeaders('POST', null)).not.toHaveProperty('X-CSRF-Token');
    expect(buildHeaders('POST', 'tok', 'application/json')['Content-Type']).toBe('application/json');
  });
});

describe('request', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    setCsrfToken(null);
  });

  it('sends cookies and the token, and parses JSON', async () => {
    const fetchMock = vi.fn(async () => new Response('{"ok":true}', { status: 200 }));
    vi.stubGlobal('fetch', fetchMock);
    setCsrfToken('csrf-1');
    await expect(api.post('/api/v1/x', { a: 1 })).resolves.toEqual({ ok: true });
    const [url, init] = fetchMock.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/api/v1/x');
    expect(init.credentials).toBe('same-origin');
    expect((init.headers as Record<string, string>)['X-CSRF-Token']).toBe('csrf-1');
    expect(init.body).toBe('{"a":1}');
    await api.get('/api/v1/y', { limit: 5, empty: '' });
    const [url2, init2] = fetchMock.mock.calls[1] as unknown as [string, RequestInit];
    expect(url2).toBe('/api/v1/y?limit=5');
    expect(init2.headers as Record<string, string>).not.toHaveProperty('X-CSRF-Token');
  });

  it('throws the server message verbatim and reports 401s', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response('{"error":"wrong username or password"}', { status: 401 })));
    const seen: string[] = [];
    onUnauthorized(() => seen.push('401'));
    await expect(api.post('/api/v1/session', {}, { allow401: true })).rejects.toEqual(new ApiError(401, 'wrong username or password'));
    expect(seen).toEqual([]);
    await expect(api.get('/api/v1/hosts')).rejects.toThrow('wrong username or password');
    expect(seen).toEqual(['401']);
  });
});

describe('helpers', () => {
  it('extracts error messages', () => {
    expect(errorMessage(400, 'Bad Request', '{"error":"the spec is invalid:\\nspec.replicas: bad"}')).toBe('the spec is invalid:\nspec.replicas: bad');
    expect(errorMessage(502, 'Bad Gateway', '<html>')).toContain('502');
    expect(errorMessage(413, '', 'body too large')).toBe('body too large');
  });
  it('builds query strings and path segments', () => {
    expect(queryString({ a: 'x y', b: undefined, c: false, d: true, e: 0 })).toBe('?a=x+y&d=true&e=0');
    expect(queryString({})).toBe('');
    expect(seg('crm/db-password', true)).toBe('crm/db-password');
    expect(seg('a b/c', false)).toBe('a%20b%2Fc');
  });
  it('unwraps lists', () => {
    expect(unwrapList([1], 'tokens')).toEqual([1]);
    expect(unwrapList({ tokens: [2] }, 'tokens')).toEqual([2]);
    expect(unwrapList(null, 'tokens')).toEqual([]);
  });
  it('normalises both session answers', () => {
    expect(normaliseSession({ csrf_token: 't', username: 'alice', role: 'operator', scope: { regions: ['eu'], service_prefixes: [] }, expires_at_ms: 5 }))
      .toEqual({ name: 'alice', kind: 'user', role: 'operator', scope: { regions: ['eu'], service_prefixes: [] }, csrfToken: 't', expiresAtMs: 5 });
    expect(normaliseSession({ csrf_token: 't', name: 'ci', kind: 'token', role: 'viewer', scope: null }).scope).toEqual({ regions: [], service_prefixes: [] });
  });
  it('parses and builds routes', () => {
    expect(parseRoute('')).toMatchObject({ page: 'overview', params: [] });
    const r = parseRoute('#/hosts/h-1?x=1');
    expect(r.page).toBe('hosts');
    expect(r.params).toEqual(['h-1']);
    expect(r.query.get('x')).toBe('1');
    expect(parseRoute('#/services/crm%2Fweb').params).toEqual(['crm/web']);
    expect(routeHash('audit', [], { action: 'secret.set', actor: '' })).toBe('#/audit?action=secret.set');
  });
});
