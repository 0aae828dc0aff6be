// Administration (admins): users (GET/POST /api/v1/users, DELETE
// /api/v1/users/{name}, POST …/{name}/password), API tokens (GET/POST
// /api/v1/tokens, DELETE …/{id}) and join tokens (GET/POST
// /api/v1/join-tokens, DELETE …/{id}).

import { api, seg, unwrapList } from '../api';
import { add, busy, button, confirmInline, copyBox, field, fill, h, input, Notice, select, table, td, tr } from '../dom';
import { formatAgo, formatTime, parseDuration } from '../format';
import { parseLabelFilter, splitList } from '../logic';
import type { PageCtx } from '../page';
import type { ApiToken, JoinToken, Scope, User } from '../types';
import { labelsList, loadInto, pageHeader, statusBadge } from '../widgets';

const ROLES: [string, string][] = [['viewer', 'viewer (read-only)'], ['operator', 'operator (deploy, secrets, backups)'], ['admin', 'admin (everything)']];

function scopeText(scope: Scope | null | undefined): string {
  if (!scope || (!scope.regions?.length && !scope.service_prefixes?.length)) return 'whole fleet';
  const parts: string[] = [];
  if (scope.regions?.length) parts.push(`regions: ${scope.regions.join(', ')}`);
  if (scope.service_prefixes?.length) parts.push(`services: ${scope.service_prefixes.map((p) => `${p}*`).join(', ')}`);
  return parts.join('; ');
}

function scopeFields(prefix: string): { regions: HTMLInputElement; services: HTMLInputElement; value(): Scope; els: HTMLElement[] } {
  const regions = input({ testid: `${prefix}-scope-regions`, name: 'regions', placeholder: 'eu-west, us-east' });
  const services = input({ testid: `${prefix}-scope-services`, name: 'service_prefixes', placeholder: 'crm' });
  return {
    regions,
    services,
    value: () => ({ regions: splitList(regions.value), service_prefixes: splitList(services.value) }),
    els: [field('Scope: regions', regions, 'comma-separated; empty = all'), field('Scope: service prefixes', services, 'comma-separated; empty = all')],
  };
}

export function render(ctx: PageCtx): void {
  const usersBox = h('div', { testid: 'users' });
  const tokensBox = h('div', { testid: 'api-tokens' });
  const joinBox = h('div', { testid: 'join-tokens' });
  const usersNotice = new Notice('users-error');
  const tokensNotice = new Notice('tokens-error');
  const joinNotice = new Notice('join-tokens-error');

  // ---- users ----
  const uName = input({ testid: 'user-name', name: 'name', autocomplete: 'off' });
  const uRole = select({ testid: 'user-role', name: 'role' }, ROLES, 'viewer');
  const uPassword = input({ type: 'password', testid: 'user-password', name: 'password', autocomplete: 'new-password', minlength: 12 });
  const uScope = scopeFields('user');
  const uNotice = new Notice('user-form-error');
  const userForm = h('form', { novalidate: true, testid: 'user-form' }, uNotice.el,
    h('div', { class: 'row' }, field('Name', uName), field('Role', uRole), field('Password', uPassword, '12 characters or more')),
    h('div', { class: 'row' }, ...uScope.els),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'user-submit' }, 'Add user')));
  userForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!uName.value.trim()) return void (uNotice.error('Give the user a name.'), uName.focus());
    if (uPassword.value.length < 12) return void (uNotice.error('The password needs 12 characters or more.'), uPassword.focus());
    void busy(userForm, uNotice, async () => {
      const u = await api.post<User>('/api/v1/users', { name: uName.value.trim(), role: uRole.value, password: uPassword.value, scope: uScope.value() });
      uNotice.ok(`${u.name} added as ${u.role}.`);
      userForm.reset();
      await loadUsers();
    });
  });

  const resetPassword = (u: User, cell: HTMLElement) => {
    const pw = input({ type: 'password', testid: 'reset-password', name: 'new_password', autocomplete: 'new-password' });
    const n = new Notice('reset-password-error');
    const form = h('form', { class: 'inline-form', novalidate: true, testid: 'reset-password-form' }, n.el,
      field(`New password for ${u.name}`, pw),
      h('button', { type: 'submit', class: 'primary', testid: 'reset-password-submit' }, 'Set password'),
      button('Cancel', () => form.remove()));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (pw.value.length < 12) return void (n.error('The password needs 12 characters or more.'), pw.focus());
      void busy(form, n, async () => {
        await api.post(`/api/v1/users/${seg(u.name)}/password`, { new_password: pw.value });
        pw.value = '';
        n.ok(`Password reset; ${u.name}'s other sessions have ended.`);
      });
    });
    cell.querySelector('.inline-form')?.remove();
    cell.append(form);
    pw.focus();
  };

  const loadUsers = () =>
    loadInto(usersBox, () => api.get<User[]>('/api/v1/users'), (users) =>
      table(['User', 'Role', 'Scope', 'Created', 'Password changed', ''],
        users.map((u) => {
          const cell = td(null);
          const rm: HTMLButtonElement = button('Remove', async () => {
            if (!(await confirmInline(cell, `Remove ${u.name}? Their sessions end at once.`, 'Remove', 'confirm-remove-user'))) return;
            await busy(rm, usersNotice, async () => {
              await api.del(`/api/v1/users/${seg(u.name)}`);
              await loadUsers();
            });
          }, { testid: 'user-remove', class: 'danger' });
          cell.append(h('div', { class: 'actions' }, button('Reset password…', () => resetPassword(u, cell), { testid: 'user-reset-password' }), u.name === ctx.session.name ? null : rm));
          return tr({ testid: 'user-row', 'data-name': u.name, 'data-role': u.role },
            h('strong', null, u.name), statusBadge(u.role), scopeText(u.scope),
            td(null, formatTime(u.created_at_ms), h('div', { class: 'muted small' }, u.created_by)),
            formatAgo(u.password_changed_at_ms, Date.now()), cell);
        }), {}, 'No users.'), ctx.alive);

  // ---- API tokens ----
  const tName = input({ testid: 'token-name', name: 'name', autocomplete: 'off' });
  const tRole = select({ testid: 'token-role', name: 'role' }, ROLES, 'viewer');
  const tTtl = input({ testid: 'token-ttl', name: 'ttl', placeholder: '90d', value: '90d' });
  const tScope = scopeFields('token');
  const tNotice = new Notice('token-form-error');
  const secretBox = h('div', { testid: 'token-secret-box' });
  const tokenForm = h('form', { novalidate: true, testid: 'token-form' }, tNotice.el,
    h('div', { class: 'row' }, field('Name', tName), field('Role', tRole), field('Expires after', tTtl, 'e.g. 12h, 90d; 0 = never')),
    h('div', { class: 'row' }, ...tScope.els),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'token-submit' }, 'Create token')),
    secretBox);
  tokenForm.addEventListener('submit', (e) => {
    e.preventDefault();
    secretBox.replaceChildren();
    if (!tName.value.trim()) return void (tNotice.error('Give the token a name.'), tName.focus());
    const ttl = tTtl.value.trim() === '' ? 0 : parseDuration(tTtl.value);
    if (ttl === null) return void (tNotice.error(`"${tTtl.value}" is not a duration, e.g. 90d.`), tTtl.focus());
    void busy(tokenForm, tNotice, async () => {
      const res = await api.post<{ token: ApiToken; secret: string }>('/api/v1/tokens', { name: tName.value.trim(), role: tRole.value, ttl_seconds: ttl, scope: tScope.value() });
      fill(secretBox, h('div', { class: 'notice notice-ok secret-once' },
        h('p', null, h('strong', null, `Token ${res.token.name} created. `), 'Copy the secret now: it is shown only once.'),
        copyBox('Token secret', res.secret, 'token-secret'),
        button('I have saved it', () => secretBox.replaceChildren(), { testid: 'token-secret-dismiss' })));
      tokenForm.querySelectorAll('input').forEach((i) => { if (i !== tTtl && !i.readOnly) i.value = ''; });
      await loadTokens();
    });
  });

  const loadTokens = () =>
    loadInto(tokensBox, async () => unwrapList<ApiToken>(await api.get<unknown>('/api/v1/tokens'), 'tokens'), (tokens) =>
      table(['Name', 'Role', 'Scope', 'Created', 'Expires', 'Last used', 'State', ''],
        tokens.map((t) => {
          const rm: HTMLButtonElement | null = t.revoked ? null : button('Revoke', async () => {
            if (!(await confirmInline(rm!.parentElement as HTMLElement, `Revoke ${t.name}? Anything using it is refused at once.`, 'Revoke', 'confirm-revoke-token'))) return;
            await busy(rm!, tokensNotice, async () => {
              await api.del(`/api/v1/tokens/${seg(t.id)}`);
              await loadTokens();
            });
          }, { testid: 'token-revoke', class: 'danger' });
          return tr({ testid: 'token-row', 'data-id': t.id, 'data-name': t.name },
            td(null, h('strong', null, t.name), t.user ? h('div', { class: 'muted small' }, `session of ${t.user}`) : null, h('div', { class: 'muted small' }, h('code', null, t.id))),
            statusBadge(t.role), scopeText(t.scope),
            td(null, formatTime(t.created_at_ms), h('div', { class: 'muted small' }, t.created_by)),
            t.expires_at_ms ? formatAgo(t.expires_at_ms, Date.now()) : 'never',
            formatAgo(t.last_used_ms, Date.now()),
            t.revoked ? statusBadge('revoked') : t.expires_at_ms && t.expires_at_ms < Date.now() ? statusBadge('expired') : statusBadge('active'),
            h('div', { class: 'actions' }, rm));
        }), { class: 'compact' }, 'No API tokens.'), ctx.alive);

  // ---- join tokens ----
  const jRegion = input({ testid: 'join-region', name: 'region', placeholder: 'eu-west' });
  const jLabels = input({ testid: 'join-labels', name: 'labels', placeholder: 'role=db, tier=back' });
  const jTtl = input({ testid: 'join-ttl', name: 'ttl', value: '1h' });
  const jUses = input({ type: 'number', min: 0, step: 1, testid: 'join-max-uses', name: 'max_uses', value: '1' });
  const jNotice = new Notice('join-form-error');
  const joinResult = h('div', { testid: 'join-result' });
  const joinForm = h('form', { novalidate: true, testid: 'join-form' }, jNotice.el,
    h('div', { class: 'row' }, field('Region', jRegion), field('Labels', jLabels, 'key=value, comma-separated'),
      field('Valid for', jTtl, 'e.g. 1h'), field('Uses', jUses, '0 = unlimited')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'join-submit' }, 'Create join token')),
    joinResult);
  joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    joinResult.replaceChildren();
    const labels = parseLabelFilter(jLabels.value);
    if (!labels.ok) return void (jNotice.error(`Labels: ${labels.error}`), jLabels.focus());
    const ttl = parseDuration(jTtl.value);
    if (ttl === null || ttl <= 0) return void (jNotice.error(`"${jTtl.value}" is not a duration, e.g. 1h.`), jTtl.focus());
    const uses = Number(jUses.value || '0');
    if (!Number.isInteger(uses) || uses < 0) return void (jNotice.error('Uses must be a whole number, 0 or more.'), jUses.focus());
    void busy(joinForm, jNotice, async () => {
      const res = await api.post<{ token: JoinToken; join_string: string; install_command: string }>('/api/v1/join-tokens',
        { region: jRegion.value.trim(), labels: labels.labels, ttl_seconds: ttl, max_uses: uses });
      fill(joinResult, h('div', { class: 'notice notice-ok' },
        h('p', null, h('strong', null, 'Join token created. '), `Run this on each new host (valid until ${formatTime(res.token.expires_at_ms)}):`),
        copyBox('Install command', res.install_command, 'install-command'),
        copyBox('Join string', res.join_string, 'join-string')));
      await loadJoin();
    });
  });

  const loadJoin = () =>
    loadInto(joinBox, async () => unwrapList<JoinToken>(await api.get<unknown>('/api/v1/join-tokens'), 'tokens'), (tokens) =>
      table(['Id', 'Region', 'Labels', 'Uses', 'Expires', 'Created', 'State', ''],
        tokens.map((t) => {
          const live = !t.revoked && t.expires_at_ms > Date.now() && (t.max_uses === 0 || t.uses < t.max_uses);
          const rm: HTMLButtonElement | null = t.revoked ? null : button('Revoke', () => void busy(rm!, joinNotice, async () => {
            await api.del(`/api/v1/join-tokens/${seg(t.id)}`);
            await loadJoin();
          }), { testid: 'join-revoke', class: 'danger' });
          return tr({ testid: 'join-row', 'data-id': t.id },
            h('code', null, t.id), t.region || '—', labelsList(t.labels), `${t.uses}/${t.max_uses || '∞'}`,
            formatAgo(t.expires_at_ms, Date.now()), td(null, formatTime(t.created_at_ms), h('div', { class: 'muted small' }, t.created_by)),
            statusBadge(t.revoked ? 'revoked' : live ? 'active' : 'expired'), rm);
        }), { class: 'compact' }, 'No join tokens.'), ctx.alive);

  add(ctx.root, 
    pageHeader('Administration'),
    h('section', { class: 'panel', 'aria-labelledby': 'u-h' }, h('h2', { id: 'u-h' }, 'Users'), usersNotice.el, usersBox, h('h3', null, 'Add a user'), userForm),
    h('section', { class: 'panel', 'aria-labelledby': 't-h' }, h('h2', { id: 't-h' }, 'API tokens'), tokensNotice.el, tokensBox, h('h3', null, 'Create a token'), tokenForm),
    h('section', { class: 'panel', 'aria-labelledby': 'j-h' }, h('h2', { id: 'j-h' }, 'Join tokens'), joinNotice.el, joinBox, h('h3', null, 'Enroll hosts'), joinForm),
  );
  void loadUsers();
  void loadTokens();
  void loadJoin();
}
