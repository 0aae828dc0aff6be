// Policies (Wasm): list, upload ({name, hook, wasm_base64, config, replace}),
// enable / disable / remove, and test with a JSON input (decision + time).

import { api, seg } from '../api';
import { add, busy, button, confirmInline, field, fill, h, input, Notice, select, table, td, tr, uid } from '../dom';
import { formatBytes, formatDuration, formatTime, shortHash } from '../format';
import { bytesToBase64, can } from '../logic';
import type { PageCtx } from '../page';
import type { PolicyInfo, PolicyTestResult } from '../types';
import { loadInto, pageHeader, statusBadge } from '../widgets';

const HOOKS = ['deployment.admit', 'placement.filter', 'rollout.analyze'];

const SAMPLE_INPUT: Record<string, string> = {
  'deployment.admit': '{\n  "service": "web",\n  "spec": {"name": "web", "image": "nginx:1.27", "replicas": 2}\n}',
  'placement.filter': '{\n  "service": "web",\n  "hosts": []\n}',
  'rollout.analyze': '{\n  "service": "web",\n  "step": 1\n}',
};

export function render(ctx: PageCtx): void {
  const manage = can(ctx.session.role, 'managePolicies');
  const test = can(ctx.session.role, 'testPolicies');
  const listBox = h('div', { testid: 'policies' });
  const listNotice = new Notice('policies-error');
  let policies: PolicyInfo[] = [];

  // ---- test ----
  const testPolicy = select({ testid: 'policy-test-name', name: 'policy' }, []);
  const testInput = h('textarea', { rows: 8, class: 'mono', testid: 'policy-test-input', spellcheck: 'false', name: 'input' });
  const testNotice = new Notice('policy-test-error');
  const testResult = h('div', { testid: 'policy-test-result', role: 'status' });
  const testForm = h('form', { novalidate: true, testid: 'policy-test-form' },
    testNotice.el,
    field('Policy', testPolicy),
    field('Input (JSON)', testInput, 'The input the hook receives (see docs/policies.md); nothing is changed.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'policy-test-submit' }, 'Test')),
    testResult);
  testPolicy.addEventListener('change', () => {
    const p = policies.find((x) => x.name === testPolicy.value);
    if (p && !testInput.value.trim()) testInput.value = SAMPLE_INPUT[p.hook] ?? '{}';
  });
  testForm.addEventListener('submit', (e) => {
    e.preventDefault();
    testResult.replaceChildren();
    if (!testPolicy.value) {
      testNotice.error('Choose a policy to test.');
      testPolicy.focus();
      return;
    }
    try {
      JSON.parse(testInput.value || 'null');
    } catch (error) {
      testNotice.error(`The input is not valid JSON: ${(error as Error).message}`);
      testInput.focus();
      return;
    }
    void busy(testForm, testNotice, async () => {
      const r = await api.post<PolicyTestResult>(`/api/v1/policies/${seg(testPolicy.value)}/test`, undefined, { body: testInput.value, contentType: 'application/json' });
      fill(testResult,
        h('p', null, 'Decision: ', h('strong', { testid: 'policy-decision', 'data-decision': r.decision }, r.decision),
          ' in ', h('span', { testid: 'policy-elapsed' }, formatDuration(r.elapsed_us / 1000)), ` (${r.policy} v${r.version}, ${r.hook})`),
        r.reasons.length ? h('div', null, h('h4', null, 'Reasons'), h('ul', null, r.reasons.map((x) => h('li', null, x)))) : null,
        r.warnings.length ? h('div', null, h('h4', null, 'Warnings'), h('ul', null, r.warnings.map((x) => h('li', null, x)))) : null,
        r.defaults !== null && r.defaults !== undefined ? h('div', null, h('h4', null, 'Defaults'), h('pre', { class: 'mono' }, JSON.stringify(r.defaults, null, 2))) : null);
    });
  });

  // ---- upload ----
  const upName = input({ testid: 'policy-name', name: 'name', autocomplete: 'off' });
  const upHook = select({ testid: 'policy-hook', name: 'hook' }, HOOKS);
  const upFile = h('input', { type: 'file', accept: '.wasm,application/wasm', testid: 'policy-file', name: 'file' });
  const upConfig = h('textarea', { rows: 4, class: 'mono', testid: 'policy-config', name: 'config', spellcheck: 'false', placeholder: '{"default_memory": "256MiB"}' });
  const upReplace = h('input', { type: 'checkbox', id: uid('replace'), testid: 'policy-replace' });
  const upNotice = new Notice('policy-upload-error');
  const upForm = h('form', { novalidate: true, testid: 'policy-upload-form' },
    upNotice.el,
    h('div', { class: 'row' }, field('Name', upName), field('Hook', upHook)),
    field('Module (.wasm)', upFile),
    field('Configuration (JSON, optional)', upConfig),
    h('div', { class: 'field checkbox' }, upReplace, h('label', { for: upReplace.id }, 'Replace: upload the next version of an existing policy')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'policy-upload-submit' }, 'Upload')));
  upForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const file = upFile.files?.[0];
    if (!upName.value.trim()) {
      upNotice.error('Give the policy a name.');
      upName.focus();
      return;
    }
    if (!file) {
      upNotice.error('Choose the .wasm module to upload.');
      upFile.focus();
      return;
    }
    let config: unknown = undefined;
    if (upConfig.value.trim()) {
      try {
        config = JSON.parse(upConfig.value);
      } catch (error) {
        upNotice.error(`The configuration is not valid JSON: ${(error as Error).message}`);
        upConfig.focus();
        return;
      }
    }
    void busy(upForm, upNotice, async () => {
      const wasm = bytesToBase64(new Uint8Array(await file.arrayBuffer()));
      const p = await api.post<PolicyInfo>('/api/v1/policies', { name: upName.value.trim(), hook: upHook.value, wasm_base64: wasm, config, replace: upReplace.checked });
      upNotice.ok(`${p.name} v${p.version} uploaded (${p.enabled ? 'enabled' : 'disabled'}).`);
      upForm.reset();
      await load();
    });
  });

  add(ctx.root, 
    pageHeader('Policies'),
    h('section', { class: 'panel', 'aria-labelledby': 'pl-h' }, h('h2', { id: 'pl-h' }, 'Policies'), listNotice.el, listBox),
    h('div', { class: 'grid-2' },
      test ? h('section', { class: 'panel', 'aria-labelledby': 'pt-h' }, h('h2', { id: 'pt-h' }, 'Test a policy'), testForm) : null,
      manage ? h('section', { class: 'panel', 'aria-labelledby': 'pu-h' }, h('h2', { id: 'pu-h' }, 'Upload a policy'), upForm) : null),
  );

  const toggle = (p: PolicyInfo, el: HTMLButtonElement) =>
    busy(el, listNotice, async () => {
      await api.post(`/api/v1/policies/${seg(p.name)}/${p.enabled ? 'disable' : 'enable'}`);
      await load();
    });

  const remove = async (p: PolicyInfo, el: HTMLButtonElement, cell: HTMLElement) => {
    if (!(await confirmInline(cell, `Remove ${p.name} and every version of it? Deployments stop consulting it at once.`, 'Remove', 'confirm-remove'))) return;
    await busy(el, listNotice, async () => {
      await api.del(`/api/v1/policies/${seg(p.name)}`);
      await load();
    });
  };

  const load = () =>
    loadInto(listBox, () => api.get<PolicyInfo[]>('/api/v1/policies'), (list) => {
      policies = [...list].sort((a, b) => a.name.localeCompare(b.name));
      const chosen = testPolicy.value;
      fill(testPolicy, h('option', { value: '' }, 'Choose…'), policies.map((p) => h('option', { value: p.name }, `${p.name} (${p.hook})`)));
      testPolicy.value = policies.some((p) => p.name === chosen) ? chosen : '';
      return table(['Policy', 'Hook', 'Version', 'State', 'Module', 'Configuration', 'Updated', ''],
        policies.map((p) => {
          const cell = td(null);
          const tg: HTMLButtonElement | null = manage ? button(p.enabled ? 'Disable' : 'Enable', () => void toggle(p, tg!), { testid: p.enabled ? 'policy-disable' : 'policy-enable' }) : null;
          const rm: HTMLButtonElement | null = manage ? button('Remove', () => void remove(p, rm!, cell), { testid: 'policy-remove', class: 'danger' }) : null;
          const ts: HTMLButtonElement | null = test ? button('Test…', () => {
            testPolicy.value = p.name;
            testInput.value = SAMPLE_INPUT[p.hook] ?? '{}';
            testInput.focus();
          }, { testid: 'policy-test-open' }) : null;
          cell.append(h('div', { class: 'actions' }, ts, tg, rm));
          return tr({ testid: 'policy-row', 'data-name': p.name, 'data-enabled': String(p.enabled) },
            h('strong', null, p.name), h('code', null, p.hook), `v${p.version}`,
            statusBadge(p.enabled ? 'enabled' : 'disabled'),
            td(null, h('code', { title: p.sha256 }, shortHash(p.sha256)), h('div', { class: 'muted small' }, formatBytes(p.size_bytes))),
            p.config === null || p.config === undefined ? h('span', { class: 'muted' }, '—') : h('code', { class: 'small' }, JSON.stringify(p.config)),
            td(null, formatTime(p.updated_at_ms), h('div', { class: 'muted small' }, p.updated_by)),
            cell);
        }), {}, 'No policies. Admins upload compiled modules here (examples in policies/).');
    }, ctx.alive);

  void load();
}
