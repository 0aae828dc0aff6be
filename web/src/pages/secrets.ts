// Secrets: names, versions and who changed them (never values); set and
// rotate (POST /api/v1/secrets {name, value_base64, expect_existing}); an
// admin-only, audited reveal (POST /api/v1/secrets/{name}/reveal).

import { api, seg } from '../api';
import { add, busy, button, confirmInline, field, fill, h, input, Notice, table, td, tr, uid } from '../dom';
import { formatAgo, formatTime } from '../format';
import { base64ToUtf8, can, utf8ToBase64 } from '../logic';
import type { PageCtx } from '../page';
import type { SecretInfo, SecretVersion } from '../types';
import { loadInto, pageHeader } from '../widgets';

export function render(ctx: PageCtx): void {
  const write = can(ctx.session.role, 'writeSecrets');
  const reveal = can(ctx.session.role, 'revealSecret');
  const listBox = h('div', { testid: 'secrets' });
  const listNotice = new Notice('secrets-error');
  const detailBox = h('div', { testid: 'secret-detail' });

  const name = input({ testid: 'secret-name', name: 'name', autocomplete: 'off', spellcheck: 'false', placeholder: 'crm/db-password' });
  const value = h('textarea', { rows: 4, testid: 'secret-value', name: 'value', autocomplete: 'off', spellcheck: 'false', class: 'mono' });
  const rotate = h('input', { type: 'checkbox', id: uid('rotate'), testid: 'secret-rotate' });
  const formNotice = new Notice('secret-form-error');
  const form = h('form', { class: 'secret-form', novalidate: true, testid: 'secret-form', autocomplete: 'off' },
    formNotice.el,
    field('Name', name, 'Letters, digits, -, _, . and / (e.g. crm/db-password)'),
    field('Value', value, 'Sent once over this session and stored encrypted; it is never shown in lists.'),
    h('div', { class: 'field checkbox' }, rotate, h('label', { for: rotate.id }, 'Rotate: the secret must already exist (services that follow its latest version redeploy)')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'secret-submit' }, 'Save secret')),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const n = name.value.trim();
    if (!n) {
      formNotice.error('Give the secret a name.');
      name.focus();
      return;
    }
    if (!value.value) {
      formNotice.error('The value is empty.');
      value.focus();
      return;
    }
    void busy(form, formNotice, async () => {
      const body = { name: n, value_base64: utf8ToBase64(value.value), expect_existing: rotate.checked };
      const res = await api.post<{ name: string; version: number; created: boolean; pruned_versions: number[] }>('/api/v1/secrets', body);
      value.value = '';
      rotate.checked = false;
      formNotice.ok(`${res.name} saved as version ${res.version}${res.created ? ' (new secret)' : ''}.`);
      await load();
    });
  });

  add(ctx.root, 
    pageHeader('Secrets'),
    h('section', { class: 'panel', 'aria-labelledby': 'sec-h' }, h('h2', { id: 'sec-h' }, 'Secrets'), listNotice.el, listBox, detailBox),
    write ? h('section', { class: 'panel', 'aria-labelledby': 'set-h' }, h('h2', { id: 'set-h' }, 'Set or rotate a secret'), form) : null,
  );

  const showVersions = async (s: SecretInfo) => {
    const revealed = h('div', { testid: 'secret-reveal-box' });
    const revealNotice = new Notice('secret-reveal-error');
    const versionsBox = h('div');
    fill(detailBox, h('div', { class: 'subpanel', testid: 'secret-versions', 'data-name': s.name },
      h('div', { class: 'panel-head' }, h('h3', null, 'Versions of ', h('code', null, s.name)), button('Close', () => detailBox.replaceChildren(), { testid: 'secret-versions-close' })),
      revealNotice.el, versionsBox, revealed));
    await loadInto(versionsBox, () => api.get<SecretVersion[]>(`/api/v1/secrets/${seg(s.name, true)}/versions`), (versions) =>
      table(['Version', 'Created', 'By', 'Master key', ''],
        [...versions].sort((a, b) => b.version - a.version).map((v) => {
          const b: HTMLButtonElement | null = reveal
            ? button('Reveal', () => void doReveal(s.name, v.version, b!, revealed, revealNotice), { testid: 'secret-reveal', 'data-version': v.version, class: 'warn' })
            : null;
          return tr({ testid: 'secret-version-row', 'data-version': v.version }, `v${v.version}`, formatTime(v.created_at_ms), v.created_by, h('code', null, v.master_key_id), b);
        }), { class: 'compact' }), ctx.alive);
  };

  const doReveal = (secret: string, version: number, el: HTMLButtonElement, box: HTMLElement, notice: Notice) =>
    busy(el, notice, async () => {
      const res = await api.post<{ name: string; version: number; value_base64: string }>(`/api/v1/secrets/${seg(secret, true)}/reveal`, undefined, { query: { version } });
      const text = base64ToUtf8(res.value_base64);
      const hide = button('Hide', () => {
        box.replaceChildren();
        el.focus();
      }, { testid: 'secret-hide' });
      fill(box, h('div', { class: 'revealed', role: 'region', 'aria-label': 'Revealed value' },
        h('p', { class: 'muted' }, `${res.name} v${res.version} — this reading is in the audit log.`),
        text !== null
          ? h('pre', { class: 'secret-value', testid: 'secret-revealed' }, text)
          : h('pre', { class: 'secret-value', testid: 'secret-revealed' }, `(binary, base64) ${res.value_base64}`),
        hide));
      hide.focus();
    });

  const remove = async (s: SecretInfo, el: HTMLButtonElement, row: HTMLElement) => {
    const cell = row.querySelector('td:last-child') as HTMLElement;
    if (!(await confirmInline(cell, `Delete ${s.name} and all its versions? Services using it will fail to start new allocations.`, 'Delete', 'confirm-delete'))) return;
    await busy(el, listNotice, async () => {
      await api.del(`/api/v1/secrets/${seg(s.name, true)}`);
      await load();
    });
  };

  const load = () =>
    loadInto(listBox, () => api.get<SecretInfo[]>('/api/v1/secrets'), (secrets) =>
      table(['Name', 'Version', 'Kept', 'Updated', 'Updated by', 'Created by', ''],
        [...secrets].sort((a, b) => a.name.localeCompare(b.name)).map((s) => {
          const row = tr({ testid: 'secret-row', 'data-name': s.name, 'data-version': s.latest_version });
          const versions = button('Versions', () => void showVersions(s), { testid: 'secret-versions-open' });
          const rot = write ? button('Rotate…', () => {
            name.value = s.name;
            rotate.checked = true;
            value.focus();
          }, { testid: 'secret-rotate-open' }) : null;
          const del: HTMLButtonElement | null = write ? button('Delete', () => void remove(s, del!, row), { testid: 'secret-delete', class: 'danger' }) : null;
          row.append(
            td(null, h('code', null, s.name)),
            td({ testid: 'secret-version' }, `v${s.latest_version}`),
            td(null, String(s.versions_kept)),
            td({ title: formatTime(s.updated_at_ms) }, formatAgo(s.updated_at_ms, Date.now())),
            td(null, s.updated_by),
            td(null, s.created_by),
            td(null, h('div', { class: 'actions' }, versions, rot, del)),
          );
          return row;
        }), {}, 'No secrets yet.'), ctx.alive);

  void load();
}
