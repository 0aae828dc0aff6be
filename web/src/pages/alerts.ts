// Alerts: firing and history (GET /api/v1/alerts[?state=firing]),
// acknowledge (POST …/{id}/ack {comment}), silences (GET/POST
// /api/v1/alerts/silences {matchers, for, comment}; DELETE …/{id}).

import { api, seg } from '../api';
import { add, busy, button, field, h, input, Notice, table, td, tr } from '../dom';
import { formatAgo, formatTime, parseDuration } from '../format';
import { can, splitList } from '../logic';
import type { PageCtx } from '../page';
import type { Alert, Silence } from '../types';
import { labelsList, loadInto, pageHeader, statusBadge } from '../widgets';

export function render(ctx: PageCtx): void {
  const manage = can(ctx.session.role, 'manageAlerts');
  const firingBox = h('div', { testid: 'alerts-firing' });
  const historyBox = h('div', { testid: 'alerts-history' });
  const silencesBox = h('div', { testid: 'silences' });
  const notice = new Notice('alerts-error');

  const matchers = h('textarea', { rows: 3, class: 'mono', testid: 'silence-matchers', name: 'matchers', placeholder: 'alertname=HostCpuHigh\nregion=eu-west' });
  const duration = input({ testid: 'silence-duration', name: 'for', value: '2h' });
  const comment = input({ testid: 'silence-comment', name: 'comment' });
  const silenceNotice = new Notice('silence-error');
  const silenceForm = h('form', { novalidate: true, testid: 'silence-form' },
    silenceNotice.el,
    field('Matchers (one per line)', matchers, 'label=value, label!=value or label=~regex; every matcher must match'),
    h('div', { class: 'row' }, field('Duration', duration, 'e.g. 30m, 2h, 1d'), field('Comment', comment)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'silence-submit' }, 'Silence')));
  silenceForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const list = splitList(matchers.value);
    if (list.length === 0) {
      silenceNotice.error('Add at least one matcher, e.g. alertname=HostCpuHigh.');
      matchers.focus();
      return;
    }
    if (parseDuration(duration.value) === null) {
      silenceNotice.error(`"${duration.value}" is not a duration, e.g. 2h.`);
      duration.focus();
      return;
    }
    if (!comment.value.trim()) {
      silenceNotice.error('Say why (the comment is shown with the silence).');
      comment.focus();
      return;
    }
    void busy(silenceForm, silenceNotice, async () => {
      const s = await api.post<Silence>('/api/v1/alerts/silences', { matchers: list, for: duration.value.trim(), comment: comment.value.trim() });
      silenceNotice.ok(`Silenced until ${formatTime(s.ends_at_ms)}.`);
      matchers.value = '';
      comment.value = '';
      await Promise.all([loadSilences(), loadFiring()]);
    });
  });

  add(ctx.root, 
    pageHeader('Alerts'),
    notice.el,
    h('section', { class: 'panel', 'aria-labelledby': 'af-h' }, h('h2', { id: 'af-h' }, 'Firing'), firingBox),
    h('div', { class: 'grid-2' },
      h('section', { class: 'panel', 'aria-labelledby': 'si-h' }, h('h2', { id: 'si-h' }, 'Silences'), silencesBox),
      manage ? h('section', { class: 'panel', 'aria-labelledby': 'ns-h' }, h('h2', { id: 'ns-h' }, 'New silence'), silenceForm) : null),
    h('section', { class: 'panel', 'aria-labelledby': 'ah-h' }, h('h2', { id: 'ah-h' }, 'History'), historyBox),
  );

  const ackForm = (a: Alert, cell: HTMLElement) => {
    const text = input({ testid: 'ack-comment', name: 'comment', placeholder: 'on it' });
    const form = h('form', { class: 'inline-form', novalidate: true, testid: 'ack-form' },
      field('Comment', text),
      h('button', { type: 'submit', class: 'primary', testid: 'ack-submit' }, 'Acknowledge'),
      button('Cancel', () => form.remove()));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      void busy(form, notice, async () => {
        await api.post(`/api/v1/alerts/${seg(a.id)}/ack`, { comment: text.value.trim() });
        await loadFiring();
      });
    });
    cell.querySelector('.inline-form')?.remove();
    cell.append(form);
    text.focus();
  };

  const prefillSilence = (a: Alert) => {
    const lines = [`alertname=${a.alertname}`];
    for (const key of ['host', 'hostname', 'service', 'region']) if (a.labels[key]) lines.push(`${key}=${a.labels[key]}`);
    matchers.value = lines.join('\n');
    comment.focus();
  };

  const alertRows = (alerts: Alert[], actions: boolean) =>
    alerts.map((a) => {
      const cell = td(null);
      if (actions && manage) {
        cell.append(h('div', { class: 'actions' },
          a.acknowledged ? null : button('Acknowledge…', () => ackForm(a, cell), { testid: 'alert-ack' }),
          button('Silence…', () => prefillSilence(a), { testid: 'alert-silence' })));
      }
      return tr({ testid: actions ? 'alert-row' : 'alert-history-row', 'data-alert-id': a.id, 'data-state': a.state },
        statusBadge(a.severity),
        td(null, h('strong', null, a.alertname), h('div', { class: 'muted small' }, a.condition)),
        td(null, a.summary, h('div', null, labelsList(a.labels))),
        statusBadge(a.state),
        td({ title: formatTime(a.firing_since_ms ?? a.started_at_ms) }, formatAgo(a.firing_since_ms ?? a.started_at_ms, Date.now())),
        a.resolved_at_ms ? formatTime(a.resolved_at_ms) : '—',
        a.acknowledged ? td(null, `${a.acknowledged.by}, ${formatAgo(a.acknowledged.at_ms, Date.now())}`, a.acknowledged.comment ? h('div', { class: 'muted small' }, a.acknowledged.comment) : null) : '—',
        cell);
    });

  const headers = ['Severity', 'Alert', 'Summary', 'State', 'Since', 'Resolved', 'Acknowledged', ''];
  const loadFiring = () =>
    loadInto(firingBox, () => api.get<Alert[]>('/api/v1/alerts', { state: 'firing' }), (alerts) =>
      alerts.length ? table(headers, alertRows(alerts, true)) : h('p', { class: 'empty ok-text' }, 'Nothing is firing.'), ctx.alive);
  const loadHistory = () =>
    loadInto(historyBox, () => api.get<Alert[]>('/api/v1/alerts', { limit: 100 }), (alerts) =>
      table(headers.slice(0, -1), alertRows(alerts, false), { class: 'compact' }, 'No alerts yet.'), ctx.alive);
  const loadSilences = () =>
    loadInto(silencesBox, () => api.get<Silence[]>('/api/v1/alerts/silences'), (silences) =>
      table(['Matchers', 'Until', 'Comment', 'By', ''],
        silences.map((s) => {
          const rm: HTMLButtonElement | null = manage && s.active ? button('Remove', () => void busy(rm!, notice, async () => {
            await api.del(`/api/v1/alerts/silences/${seg(s.id)}`);
            await loadSilences();
          }), { testid: 'silence-remove', class: 'danger' }) : null;
          return tr({ testid: 'silence-row', 'data-silence-id': s.id },
            h('div', null, s.matchers.map((m) => h('div', null, h('code', null, m)))),
            td({ title: formatTime(s.ends_at_ms) }, s.active ? formatAgo(s.ends_at_ms, Date.now()) : `expired${s.expired_by ? ` by ${s.expired_by}` : ''}`),
            s.comment, s.created_by, rm);
        }), { class: 'compact' }, 'No active silences.'), ctx.alive);

  ctx.every(10_000, loadFiring, true);
  ctx.every(30_000, loadHistory, true);
  ctx.every(30_000, loadSilences, true);
}
