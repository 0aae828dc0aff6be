// Small pieces shared by the pages.

import { badge, fill, h, messageOf, type Child } from './dom';
import { formatPercent } from './format';
import { usageLevel } from './logic';

export function statusBadge(status: string, attrs: Record<string, string> = {}): HTMLSpanElement {
  const kind =
    status === 'online' || status === 'ok' || status === 'healthy' || status === 'running' || status === 'succeeded' || status === 'firing-none'
      ? 'ok'
      : status === 'offline' || status === 'failed' || status === 'unhealthy' || status === 'revoked' || status === 'overdue' || status === 'failing' || status === 'firing' || status === 'critical'
        ? 'bad'
        : status === 'pending' || status === 'starting' || status === 'unverified' || status === 'warning' || status === 'never' || status === 'not-verified'
          ? 'warn'
          : 'neutral';
  return badge(status || 'unknown', kind, attrs);
}

/** A percentage with a small bar (the bar width is set from JS, which the CSP allows). */
export function usage(percent: number | null, label: string): HTMLElement {
  const level = usageLevel(percent);
  const fillBar = h('span', { class: `bar-fill level-${level}` });
  fillBar.style.width = `${Math.max(0, Math.min(100, percent ?? 0))}%`;
  return h(
    'span',
    { class: 'usage', title: `${label} ${formatPercent(percent)}` },
    h('span', { class: 'bar', 'aria-hidden': 'true' }, fillBar),
    h('span', { class: 'usage-text' }, formatPercent(percent, 0)),
  );
}

export function progressBar(percent: number, label: string, testid?: string): HTMLElement {
  const bar = h('progress', { max: 100, value: percent, 'aria-label': label, testid: testid ?? null });
  return bar;
}

export function labelsList(labels: Record<string, string> | null | undefined): Child {
  const entries = Object.entries(labels ?? {});
  if (entries.length === 0) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'labels' }, entries.map(([k, v]) => h('code', { class: 'label' }, `${k}=${v}`)));
}

export function hostLink(id: string, text?: string): HTMLAnchorElement {
  return h('a', { href: `#/hosts/${encodeURIComponent(id)}` }, text || id);
}

export function serviceLink(name: string): HTMLAnchorElement {
  return h('a', { href: `#/services/${encodeURIComponent(name)}` }, name);
}

/** Loads into a container: shows "Loading…" first, the error (verbatim) on failure. */
export async function loadInto<T>(
  container: HTMLElement,
  load: () => Promise<T>,
  render: (value: T) => Child,
  alive: () => boolean = () => true,
): Promise<T | undefined> {
  if (!container.hasChildNodes()) fill(container, h('p', { class: 'loading' }, 'Loading…'));
  try {
    const value = await load();
    if (!alive()) return undefined;
    fill(container, render(value));
    return value;
  } catch (error) {
    if (alive()) fill(container, h('div', { class: 'notice notice-error', role: 'alert' }, messageOf(error)));
    return undefined;
  }
}

export function pageHeader(title: string, ...extra: Child[]): HTMLElement {
  return h('div', { class: 'page-header' }, h('h1', null, title), ...extra);
}

export function dl(pairs: [string, Child][], attrs: Record<string, string> = {}): HTMLDListElement {
  return h('dl', { class: 'facts', ...attrs }, pairs.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}
