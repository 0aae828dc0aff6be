// The one way the dashboard talks to /api/v1: same-origin cookies, the CSRF
// token on every mutating request, `{"error": "..."}` bodies turned into
// ApiError with the server's message verbatim, and any 401 sent back to the
// login page.

export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** True for the methods that change state and so carry the CSRF token. */
export function isMutating(method: string): boolean {
  return MUTATING.has(method.toUpperCase());
}

/** The request headers: the CSRF token only on mutating methods. */
export function buildHeaders(
  method: string,
  csrfToken: string | null,
  contentType?: string,
): Record<string, string> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (contentType) headers['Content-Type'] = contentType;
  if (isMutating(method) && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  return headers;
}

/** A query string from the set (non-empty) values, with a leading `?`. */
export function queryString(query?: Record<string, string | number | boolean | null | undefined>): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '' || value === false) continue;
    params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** Encodes a path segment; secret names keep their slashes (crm/db-password). */
export function seg(value: string, keepSlashes = false): string {
  if (!keepSlashes) return encodeURIComponent(value);
  return value.split('/').map(encodeURIComponent).join('/');
}

/** The message of an error response: the JSON `error` field verbatim, else the text. */
export function errorMessage(status: number, statusText: string, body: string): string {
  const trimmed = body.trim();
  if (trimmed) {
    try {
      const parsed: unknown = JSON.parse(trimmed);
      if (parsed && typeof parsed === 'object' && 'error' in parsed) {
        const error = (parsed as { error: unknown }).error;
        if (typeof error === 'string' && error) return error;
      }
    } catch {
      // not JSON: fall through to the text
    }
    if (trimmed.length < 500 && !trimmed.startsWith('<')) return trimmed;
  }
  return `The control plane answered ${status}${statusText ? ` ${statusText}` : ''}.`;
}

let csrfToken: string | null = null;
let unauthorizedHandler: (() => void) | null = null;

export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

export function getCsrfToken(): string | null {
  return csrfToken;
}

/** Called on any 401 (except where a caller asked to see it, e.g. the login form). */
export function onUnauthorized(handler: () => void): void {
  unauthorizedHandler = handler;
}

export interface RequestOptions {
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as is (a spec, a policy input). */
  body?: string;
  contentType?: string;
  query?: Record<string, string | number | boolean | null | undefined>;
  /** Let a 401 reach the caller instead of going back to the login page. */
  allow401?: boolean;
  signal?: AbortSignal;
}

export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  let body: string | undefined;
  let contentType = options.contentType;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    contentType = contentType ?? 'application/json';
  } else if (options.body !== undefined) {
    body = options.body;
    contentType = contentType ?? 'text/plain; charset=utf-8';
  }
  let response: Response;
  try {
    response = await fetch(path + queryString(options.query), {
      method,
      credentials: 'same-origin',
      headers: buildHeaders(method, csrfToken, contentType),
      body,
      signal: options.signal,
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new ApiError(0, 'The control plane cannot be reached; check the connection and retry.');
  }
  const text = await response.text();
  if (!response.ok) {
    const message = errorMessage(response.status, response.statusText, text);
    if (response.status === 401 && !options.allow401 && unauthorizedHandler) unauthorizedHandler();
    throw new ApiError(response.status, message);
  }
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    return text as unknown as T;
  }
}

export const api = {
  get: <T>(path: string, query?: RequestOptions['query'], options: RequestOptions = {}) =>
    request<T>('GET', path, { ...options, query }),
  post: <T>(path: string, json?: unknown, options: RequestOptions = {}) =>
    request<T>('POST', path, json === undefined ? options : { ...options, json }),
  patch: <T>(path: string, json?: unknown, options: RequestOptions = {}) =>
    request<T>('PATCH', path, { ...options, json }),
  del: <T>(path: string, options: RequestOptions = {}) => request<T>('DELETE', path, options),
};

/** Lists that may come bare (`[...]`) or wrapped (`{"tokens": [...]}`). */
export function unwrapList<T>(value: unknown, key: string): T[] {
  if (Array.isArray(value)) return value as T[];
  if (value && typeof value === 'object') {
    const inner = (value as Record<string, unknown>)[key];
    if (Array.isArray(inner)) return inner as T[];
  }
  return [];
}
