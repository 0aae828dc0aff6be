// Audit log: filter by actor, action and time (GET /api/v1/audit?actor=&
// action=&since=&before=&limit=), page back with `before`, verify the chain
// (GET /api/v1/audit/verify).

import { api } from '../api';
import { add, busy, button, field, fill, h, input, Notice, select, table, td, tr } from '../dom';
import { formatTime, shortHash } from '../format';
import type { PageCtx } from '../page';
import type { AuditRecord, AuditVerification } from '../types';
import { routeHash } from '../router';
import { dl, pageHeader, statusBadge } from '../widgets';

const PAGE = 100;

/** datetime-local text ⇄ Unix ms. */
export function localInputToMs(text: string): number | null {
  if (!text) return null;
  const ms = new Date(text).getTime();
  return Number.isFinite(ms) ? ms : null;
}

function msToLocalInput(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function render(ctx: PageCtx): void {
  const q = ctx.query;
  const actor = input({ testid: 'audit-actor', name: 'actor', value: q.get('actor') ?? '', placeholder: 'user:alice or token:ci' });
  const action = input({ testid: 'audit-action', name: 'action', value: q.get('action') ?? '', placeholder: 'secret.set' });
  const preset = select({ testid: 'audit-range', name: 'range' }, [['', 'Any time'], ['1h', 'Last hour'], ['24h', 'Last day'], ['168h', 'Last week'], ['custom', 'Between…']], q.get('range') ?? (q.get('from') ? 'custom' : ''));
  const from = input({ type: 'datetime-local', testid: 'audit-from', name: 'from' });
  const to = input({ type: 'datetime-local', testid: 'audit-to', name: 'to' });
  if (q.get('from')) from.value = msToLocalInput(Number(q.get('from')));
  if (q.get('to')) to.value = msToLocalInput(Number(q.get('to')));
  const customRange = h('div', { class: 'row', hidden: preset.value !== 'custom' }, field('From', from), field('To', to));
  preset.addEventListener('change', () => {
    customRange.hidden = preset.value !== 'custom';
  });
  const notice = new Notice('audit-error');
  const filterForm = h('form', { class: 'filters', role: 'search', novalidate: true, testid: 'audit-filters' },
    field('Actor', actor), field('Action', action, 'exact action name, e.g. secret.set'), field('Time', preset), customRange,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'audit-apply' }, 'Filter'),
      button('Clear', () => ctx.navigate('#/audit'), { testid: 'audit-clear' })));
  filterForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const query: Record<string, string> = { actor: actor.value.trim(), action: action.value.trim() };
    if (preset.value === 'custom') {
      const f = localInputToMs(from.value);
      const t = localInputToMs(to.value);
      if (f !== null && t !== null && t < f) {
        notice.error('"To" is before "From".');
        to.focus();
        return;
      }
      query.from = f === null ? '' : String(f);
      query.to = t === null ? '' : String(t);
    } else {
      query.range = preset.value;
    }
    const hash = routeHash('audit', [], query);
    if (hash === location.hash) void load(true);
    else ctx.navigate(hash);
  });

  const listBox = h('div', { testid: 'audit-records' });
  const more = button('Older entries', () => void busy(more, notice, () => load(false)), { testid: 'audit-more', hidden: true });
  const verifyBox = h('div', { testid: 'audit-verify-result', role: 'status' });
  const verify: HTMLButtonElement = button('Verify the chain', () => void busy(verify, null, async () => {
    try {
      const v = await api.get<AuditVerification>('/api/v1/audit/verify');
      fill(verifyBox, h('div', { class: `notice ${v.ok ? 'notice-ok' : 'notice-error'}`, 'data-ok': String(v.ok) },
        h('p', null, h('strong', null, v.ok ? 'The chain is intact.' : 'The chain is broken.')),
        dl([['Records', String(v.records)], ['Head', `#${v.head_seq} ${shortHash(v.head_hash)}`]]),
        v.problems.length ? h('ul', { testid: 'audit-problems' }, v.problems.map((p) => h('li', null, p))) : null));
    } catch (error) {
      fill(verifyBox, h('div', { class: 'notice notice-error', role: 'alert' }, error instanceof Error ? error.message : String(error)));
    }
  }), { testid: 'audit-verify' });

  add(ctx.root, 
    pageHeader('Audit log'),
    h('section', { class: 'panel', 'aria-labelledby': 'av-h' }, h('h2', { id: 'av-h' }, 'Integrity'),
      h('p', { class: 'muted' }, 'Every entry carries the hash of the one before; verifying recomputes the whole chain.'), verify, verifyBox),
    h('section', { class: 'panel', 'aria-labelledby': 'ar-h' }, h('h2', { id: 'ar-h' }, 'Entries'), filterForm, notice.el, listBox, more),
  );

  let records: AuditRecord[] = [];
  const sinceParam = (): string | undefined => {
    const range = q.get('range');
    if (range) return range;
    const f = q.get('from');
    return f ? f : undefined;
  };
  const toMs = q.get('to') ? Number(q.get('to')) : null;

  const load = async (reset: boolean) => {
    if (reset) records = [];
    const before = records.length ? records[records.length - 1].seq : undefined;
    try {
      const page = await api.get<AuditRecord[]>('/api/v1/audit', {
        actor: q.get('actor') ?? '', action: q.get('action') ?? '', since: sinceParam(), before, limit: PAGE,
      });
      if (!ctx.alive()) return;
      page.sort((a, b) => b.seq - a.seq);
      records = records.concat(page);
      more.hidden = page.length < PAGE;
      const shown = toMs === null ? records : records.filter((r) => r.at_ms <= toMs);
      fill(listBox, table(['#', 'When', 'Actor', 'Source', 'Action', 'Target', 'Outcome', 'Hash'],
        shown.map((r) => tr({ testid: 'audit-row', 'data-seq': r.seq, 'data-action': r.action, 'data-target': r.target, 'data-actor': r.actor },
          String(r.seq), formatTime(r.at_ms), r.actor, h('span', { class: 'muted small' }, r.source), h('code', null, r.action),
          td({ class: 'wrap' }, r.target), statusBadge(r.outcome), h('code', { title: r.hash, class: 'small' }, shortHash(r.hash)))),
        { class: 'compact' }, 'No entries match.'));
    } catch (error) {
      if (ctx.alive()) notice.error(error);
    }
  };
  void load(true);
}
