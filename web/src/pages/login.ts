import { api } from '../api';
import { busy, field, fill, h, input, Notice } from '../dom';
import type { SessionJson } from '../session';

/** The sign-in form: POST /api/v1/session; a 401 shows the server's message. */
export function renderLogin(app: HTMLElement, message: string | undefined, onSignedIn: (json: SessionJson) => void): void {
  const username = input({ name: 'username', autocomplete: 'username', required: true, testid: 'login-username' });
  const password = input({ type: 'password', name: 'password', autocomplete: 'current-password', required: true, testid: 'login-password' });
  const notice = new Notice('login-error');
  const form = h(
    'form',
    { class: 'login-form', novalidate: true, 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to Argosy'),
    notice.el,
    field('Username', username),
    field('Password', password),
    h('button', { type: 'submit', class: 'primary', testid: 'login-submit' }, 'Sign in'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!username.value.trim() || !password.value) {
      notice.error('Enter your username and password.');
      (username.value.trim() ? password : username).focus();
      return;
    }
    void busy(form, notice, async () => {
      const json = await api.post<SessionJson>(
        '/api/v1/session',
        { username: username.value.trim(), password: password.value },
        { allow401: true },
      );
      password.value = '';
      onSignedIn(json);
    }).then(() => {
      if (!notice.el.hidden) password.select();
    });
  });
  // The first admin has a token (printed once by `argosy dev` or the first
  // `argosy server`), not a password: it opens a session too.
  const token = input({ type: 'password', name: 'token', autocomplete: 'off', required: true, testid: 'login-token' });
  const tokenNotice = new Notice('login-token-error');
  const tokenForm = h(
    'form',
    { class: 'login-form', novalidate: true, 'aria-labelledby': 'login-token-title' },
    h('h2', { id: 'login-token-title' }, 'Or sign in with an API token'),
    tokenNotice.el,
    field('API token', token),
    h('button', { type: 'submit', testid: 'login-token-submit' }, 'Sign in with token'),
  );
  tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!token.value.trim()) {
      tokenNotice.error('Paste an API token (argosy_…).');
      token.focus();
      return;
    }
    void busy(tokenForm, tokenNotice, async () => {
      const json = await api.post<SessionJson>('/api/v1/session', { token: token.value.trim() }, { allow401: true });
      token.value = '';
      onSignedIn(json);
    });
  });
  fill(app, h('main', { id: 'main', class: 'login-page' }, form, tokenForm));
  if (message) {
    if (/signed out/i.test(message)) notice.ok(message);
    else notice.error(message);
  }
  username.focus();
}
