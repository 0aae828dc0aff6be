// The shell: session bootstrap, navigation, routing to pages.

import './styles.css';
import { api, ApiError, onUnauthorized, setCsrfToken } from './api';
import { button, fill, h, messageOf } from './dom';
import { can } from './logic';
import type { PageCtx, PageModule } from './page';
import { parseRoute, type Route } from './router';
import type { Role, Scope, Session } from './types';
import { normaliseSession, type SessionJson } from './session';
import { renderLogin } from './pages/login';

interface NavItem {
  page: string;
  label: string;
  visible(role: Role): boolean;
  load(): Promise<PageModule>;
}

const always = () => true;

const NAV: NavItem[] = [
  { page: 'overview', label: 'Overview', visible: always, load: () => import('./pages/overview') },
  { page: 'services', label: 'Services', visible: always, load: () => import('./pages/services') },
  { page: 'routing', label: 'Routing', visible: always, load: () => import('./pages/routing') },
  { page: 'backups', label: 'Backups', visible: always, load: () => import('./pages/backups') },
  { page: 'secrets', label: 'Secrets', visible: always, load: () => import('./pages/secrets') },
  { page: 'policies', label: 'Policies', visible: always, load: () => import('./pages/policies') },
  { page: 'alerts', label: 'Alerts', visible: always, load: () => import('./pages/alerts') },
  { page: 'audit', label: 'Audit log', visible: (r) => can(r, 'readAudit'), load: () => import('./pages/audit') },
  { page: 'admin', label: 'Administration', visible: (r) => can(r, 'manageUsers'), load: () => import('./pages/admin') },
];

/** Pages reached from others, highlighted under a nav item. */
const EXTRA: Record<string, { nav: string; load(): Promise<PageModule> }> = {
  hosts: { nav: 'overview', load: () => import('./pages/host') },
};

const app = document.getElementById('app') as HTMLElement;
let session: Session | null = null;
let cleanups: (() => void)[] = [];
let generation = 0;
/** Where to go after signing in (the page asked for before the login page). */
let afterLogin = '';
/** The login form is on screen (so a hash change to #/login keeps its message). */
let loginShown = false;

function runCleanups(): void {
  const fns = cleanups;
  cleanups = [];
  for (const fn of fns) {
    try {
      fn();
    } catch {
      // a cleanup failing must not keep the next page from rendering
    }
  }
}

function setSession(next: Session | null): void {
  session = next;
  setCsrfToken(next?.csrfToken ?? null);
}

function showLogin(message?: string): void {
  runCleanups();
  generation += 1;
  loginShown = true;
  setSession(null);
  const hash = location.hash;
  if (hash && !hash.startsWith('#/login')) afterLogin = hash;
  document.title = 'Sign in · Argosy';
  renderLogin(app, message, (json) => {
    setSession(normaliseSession(json));
    const target = afterLogin || '#/overview';
    afterLogin = '';
    if (location.hash === target) void route();
    else location.hash = target;
  });
}

function scopeText(scope: Scope): string {
  const parts: string[] = [];
  if (scope.regions?.length) parts.push(`regions ${scope.regions.join(', ')}`);
  if (scope.service_prefixes?.length) parts.push(`services ${scope.service_prefixes.join(', ')}*`);
  return parts.join('; ');
}

function shell(current: string, s: Session): HTMLElement {
  const links = NAV.filter((item) => item.visible(s.role)).map((item) =>
    h(
      'li',
      null,
      h('a', { href: `#/${item.page}`, 'aria-current': item.page === current ? 'page' : null, testid: `nav-${item.page}` }, item.label),
    ),
  );
  const logout = button('Sign out', async () => {
    logout.disabled = true;
    try {
      await api.del('/api/v1/session', { allow401: true });
    } catch {
      // the session is gone either way
    }
    afterLogin = '';
    location.hash = '#/login';
    showLogin('You are signed out.');
  }, { testid: 'logout', class: 'link-button' });
  const scope = scopeText(s.scope);
  const main = h('main', { id: 'main', tabindex: '-1' });
  fill(
    app,
    h('a', { href: '#main', class: 'skip-link', onclick: (e: Event) => { e.preventDefault(); main.focus(); } }, 'Skip to content'),
    h(
      'header',
      { class: 'topbar' },
      h('a', { href: '#/overview', class: 'brand' }, 'Argosy'),
      h('nav', { 'aria-label': 'Main' }, h('ul', null, links)),
      h(
        'div',
        { class: 'whoami', testid: 'whoami', 'data-role': s.role },
        h('span', null, s.name),
        ' ',
        h('span', { class: `badge badge-role-${s.role}`, testid: 'role' }, s.role),
        scope ? h('span', { class: 'scope', title: 'Your scope' }, ` ${scope}`) : null,
        ' ',
        logout,
      ),
    ),
    main,
  );
  return main;
}

function notFound(main: HTMLElement, text: string): void {
  fill(main, h('h1', null, 'Not found'), h('p', null, text), h('p', null, h('a', { href: '#/overview' }, 'Back to the overview')));
}

async function route(): Promise<void> {
  const r: Route = parseRoute(location.hash);
  if (r.page === 'login') {
    if (session) {
      location.hash = '#/overview';
      return;
    }
    if (!loginShown) showLogin();
    return;
  }
  if (!session) {
    if (!loginShown) showLogin();
    else afterLogin = location.hash;
    return;
  }
  loginShown = false;
  runCleanups();
  generation += 1;
  const mine = generation;
  const s = session;
  const nav = NAV.find((item) => item.page === r.page);
  const extra = EXTRA[r.page];
  const main = shell(nav ? nav.page : extra ? extra.nav : '', s);
  if ((!nav && !extra) || (nav && !nav.visible(s.role))) {
    document.title = 'Not found · Argosy';
    notFound(main, nav ? 'Your role cannot open this page.' : `There is no page "${r.page}".`);
    return;
  }
  fill(main, h('p', { class: 'loading' }, 'Loading…'));
  let module: PageModule;
  try {
    module = await (nav ?? extra).load();
  } catch (error) {
    if (mine === generation) fill(main, h('div', { class: 'notice notice-error', role: 'alert' }, `The page could not load: ${messageOf(error)}`));
    return;
  }
  if (mine !== generation) return;
  main.replaceChildren();
  const ctx: PageCtx = {
    root: main,
    session: s,
    params: r.params,
    query: r.query,
    alive: () => mine === generation,
    onCleanup: (fn) => {
      if (mine === generation) cleanups.push(fn);
      else fn();
    },
    every(ms, fn, immediate = false) {
      let timer: number | undefined;
      const tick = async () => {
        if (mine !== generation) return;
        let again: unknown = true;
        try {
          again = await fn();
        } catch {
          again = true;
        }
        if (mine === generation && again !== false) timer = window.setTimeout(tick, ms);
      };
      timer = window.setTimeout(tick, immediate ? 0 : ms);
      ctx.onCleanup(() => window.clearTimeout(timer));
    },
    navigate: (hash) => {
      location.hash = hash;
    },
    setTitle: (title) => {
      document.title = `${title} · Argosy`;
    },
  };
  ctx.setTitle(nav?.label ?? r.page);
  try {
    await module.render(ctx);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    if (mine === generation) {
      main.prepend(h('div', { class: 'notice notice-error', role: 'alert', testid: 'page-error' }, messageOf(error)));
    }
  }
}

async function boot(): Promise<void> {
  onUnauthorized(() => {
    if (session) showLogin('Your session has ended; sign in again.');
  });
  window.addEventListener('hashchange', () => void route());
  try {
    const json = await api.get<SessionJson>('/api/v1/session', undefined, { allow401: true });
    setSession(normaliseSession(json));
  } catch (error) {
    setSession(null);
    if (error instanceof ApiError && (error.status === 401 || error.status === 404)) {
      showLogin();
    } else {
      showLogin(messageOf(error));
    }
    return;
  }
  await route();
}

void boot();
