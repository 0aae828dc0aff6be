// Tiny DOM helpers. Text always goes in as text nodes (never innerHTML), and
// nothing sets a style attribute in markup, so the strict CSP holds.

import { ApiError } from './api';

export type Child = Node | string | number | null | undefined | false | Child[];
type AttrValue = string | number | boolean | null | undefined;
export type Attrs = {
  [key: string]: AttrValue | EventListener | ((event: never) => void);
};

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (typeof value === 'function') {
        el.addEventListener(key.replace(/^on/, '').toLowerCase(), value as EventListener);
      } else if (key === 'testid') {
        el.setAttribute('data-testid', String(value));
      } else if (key === 'class') {
        el.className = String(value);
      } else if (key === 'value' && 'value' in el) {
        (el as unknown as { value: string }).value = String(value);
      } else if (key === 'checked' && el instanceof HTMLInputElement) {
        el.checked = Boolean(value);
      } else if (value === true) {
        el.setAttribute(key, '');
      } else {
        el.setAttribute(key, String(value));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

/** Appends children, skipping null/false (conditional sections). */
export function add(parent: Node, ...children: Child[]): void {
  append(parent, children);
}

/** Replaces an element's children. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

let nextId = 0;
export function uid(prefix: string): string {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** A labelled control: `<label for>` + the control (which gets an id). */
export function field(
  label: string,
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
  hint?: string,
): HTMLDivElement {
  if (!control.id) control.id = uid('f');
  const children: Child[] = [h('label', { for: control.id }, label), control];
  if (hint) {
    const hintId = uid('hint');
    control.setAttribute('aria-describedby', hintId);
    children.push(h('small', { id: hintId, class: 'hint' }, hint));
  }
  return h('div', { class: 'field' }, ...children);
}

export function input(attrs: Attrs): HTMLInputElement {
  return h('input', { type: 'text', ...attrs });
}

export function select(attrs: Attrs, options: (string | [string, string])[], selected?: string): HTMLSelectElement {
  const el = h('select', attrs);
  for (const option of options) {
    const [value, label] = Array.isArray(option) ? option : [option, option];
    const o = h('option', { value }, label);
    if (value === selected) o.selected = true;
    el.appendChild(o);
  }
  return el;
}

export function button(
  label: Child,
  onClick: (event: MouseEvent) => void,
  attrs: Attrs = {},
): HTMLButtonElement {
  return h('button', { type: 'button', onclick: onClick, ...attrs }, label);
}

export function badge(text: string, kind: string, attrs: Attrs = {}): HTMLSpanElement {
  return h('span', { class: `badge badge-${kind}`, ...attrs }, text);
}

/** The message to show for a failure: the server's `error` verbatim. */
export function messageOf(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** A form-level message area (role=alert for errors). */
export class Notice {
  readonly el: HTMLDivElement;
  constructor(testid: string) {
    this.el = h('div', { class: 'notice', testid, hidden: true });
  }
  error(error: unknown | string): void {
    const text = typeof error === 'string' ? error : messageOf(error);
    this.el.className = 'notice notice-error';
    this.el.setAttribute('role', 'alert');
    this.el.hidden = false;
    // Messages can span lines (validation errors): keep them.
    fill(this.el, ...text.split('\n').flatMap((line, i) => (i === 0 ? [line] : [h('br'), line])));
  }
  ok(...children: Child[]): void {
    this.el.className = 'notice notice-ok';
    this.el.setAttribute('role', 'status');
    this.el.hidden = false;
    fill(this.el, ...children);
  }
  clear(): void {
    this.el.hidden = true;
    this.el.removeAttribute('role');
    this.el.replaceChildren();
  }
}

/** A table with a header row; rows are given as <tr> elements. */
export function table(headers: string[], rows: HTMLTableRowElement[], attrs: Attrs = {}, empty = 'Nothing here yet.'): HTMLElement {
  if (rows.length === 0) return h('p', { ...attrs, class: 'empty' }, empty);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      attrs,
      h('thead', null, h('tr', null, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows),
    ),
  );
}

export function tr(attrs: Attrs | null, ...cells: Child[]): HTMLTableRowElement {
  return h('tr', attrs, cells.map((c) => (c instanceof HTMLTableCellElement ? c : h('td', null, c))));
}

export function td(attrs: Attrs | null, ...children: Child[]): HTMLTableCellElement {
  return h('td', attrs, ...children);
}

/** A section with a heading. */
export function section(title: string, attrs: Attrs, ...children: Child[]): HTMLElement {
  const headingId = uid('h');
  return h('section', { class: 'panel', 'aria-labelledby': headingId, ...attrs }, h('h2', { id: headingId }, title), ...children);
}

/** Runs an action from a button: disables it while pending, reports errors to the notice. */
export async function busy<T>(
  el: HTMLButtonElement | HTMLFormElement,
  notice: Notice | null,
  action: () => Promise<T>,
): Promise<T | undefined> {
  const buttons =
    el instanceof HTMLFormElement
      ? [...el.querySelectorAll<HTMLButtonElement>('button[type=submit]')]
      : [el];
  for (const b of buttons) b.disabled = true;
  el.setAttribute('aria-busy', 'true');
  try {
    notice?.clear();
    return await action();
  } catch (error) {
    if (notice) notice.error(error);
    else throw error;
    return undefined;
  } finally {
    for (const b of buttons) b.disabled = false;
    el.removeAttribute('aria-busy');
  }
}

/**
 * An inline confirmation (no window.confirm): shows the question with
 * Confirm and Cancel buttons in `host`, resolves true on Confirm.
 */
export function confirmInline(host: HTMLElement, question: Child, confirmLabel: string, testid = 'confirm'): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (answer: boolean) => {
      box.remove();
      resolve(answer);
    };
    const yes = button(confirmLabel, () => done(true), { class: 'danger', testid: `${testid}-yes` });
    const no = button('Cancel', () => done(false), { testid: `${testid}-no` });
    const box = h('div', { class: 'confirm', role: 'alertdialog', testid }, h('p', null, question), h('div', { class: 'actions' }, yes, no));
    host.querySelector(':scope > .confirm')?.remove();
    host.appendChild(box);
    yes.focus();
  });
}

/** Copies text to the clipboard (falls back to a selection copy on plain HTTP). */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall back below
  }
  const area = h('textarea', { readonly: true, class: 'offscreen', 'aria-hidden': 'true' });
  area.value = text;
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** A read-only value with a copy button. */
export function copyBox(label: string, value: string, testid: string): HTMLElement {
  const out = h('input', { type: 'text', readonly: true, value, testid: `${testid}-value`, class: 'mono' });
  const status = h('span', { class: 'copy-status', role: 'status' });
  const copy = button('Copy', async () => {
    const ok = await copyText(value);
    status.textContent = ok ? 'Copied' : 'Copy failed: select the text and copy it';
  }, { testid: `${testid}-copy` });
  return h('div', { class: 'copy-box' }, field(label, out), h('div', { class: 'actions' }, copy, status));
}
