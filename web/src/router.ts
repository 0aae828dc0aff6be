// Hash routing: #/overview, #/hosts/ID, #/services/NAME, #/audit?action=x.

export interface Route {
  page: string;
  params: string[];
  query: URLSearchParams;
}

export const DEFAULT_PAGE = 'overview';

export function parseRoute(hash: string): Route {
  let text = hash.startsWith('#') ? hash.slice(1) : hash;
  let query = new URLSearchParams();
  const q = text.indexOf('?');
  if (q >= 0) {
    query = new URLSearchParams(text.slice(q + 1));
    text = text.slice(0, q);
  }
  const parts = text
    .split('/')
    .filter(Boolean)
    .map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
  if (parts.length === 0) return { page: DEFAULT_PAGE, params: [], query };
  return { page: parts[0], params: parts.slice(1), query };
}

/** Builds a hash: routeHash('hosts', ['h-1']) → '#/hosts/h-1'. */
export function routeHash(page: string, params: string[] = [], query?: Record<string, string>): string {
  const path = [page, ...params].map(encodeURIComponent).join('/');
  const qs = query
    ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== '')).toString()
    : '';
  return `#/${path}${qs ? `?${qs}` : ''}`;
}
