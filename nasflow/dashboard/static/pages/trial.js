// One model: sample, metrics (with its curve), status history, failure, log tail and, for
// graph-format models, the generated PyTorch code (or why there is none), with downloads.

import { Plot } from '../charts.js';
import {
  api, badge, clear, downloadLink, fmtDuration, fmtMetric, fmtTime, fmtValue, h,
} from '../dom.js';

function keyValueTable(entries, id) {
  return h('table', { class: 'data kv', id }, h('tbody', {}, entries.map(([k, v]) => h('tr', {},
    h('th', {}, k), h('td', {}, v)))));
}

export function trialPage(root, route, ctx) {
  const id = Number(route.arg);
  const head = h('div', { class: 'trial-head' });
  const sample = h('section', {}, h('h2', {}, 'Sample'));
  const metrics = h('section', {}, h('h2', {}, 'Metrics'));
  const chartBox = h('div', { id: 'trial-chart' });
  const values = h('details', {}, h('summary', {}, 'Intermediate values'));
  const history = h('section', {}, h('h2', {}, 'Status history'));
  const failure = h('section', { hidden: true }, h('h2', {}, 'Failure'));
  const logInfo = h('p', { class: 'muted' });
  const log = h('pre', { id: 'log', class: 'log' });
  const code = h('section', { id: 'code-section' }, h('h2', {}, 'Code'));
  clear(root, head, h('div', { class: 'columns' }, sample, metrics), h('section', {}, chartBox, values), history,
    failure, h('section', {}, h('h2', {}, 'Log'), logInfo, log), code);
  const chart = new Plot(chartBox, { height: 260, xLabel: 'step', integerX: true, yLabel: 'intermediate metric' });
  let codeShown = false;

  async function refreshLog(trial) {
    const tail = await api(`/api/trials/${id}/log`);
    logInfo.textContent = tail.reason ?? `${tail.path} (${tail.size} bytes${tail.truncated ? ', showing the end' : ''})`;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = tail.text ?? '';
    log.hidden = tail.text == null;
    if (atBottom || trial.status === 'training') log.scrollTop = log.scrollHeight;
  }

  async function showCode(trial) {
    clear(code, h('h2', {}, 'Code'));
    if (!trial.code.available) {
      code.append(h('p', { class: 'muted', id: 'code-unavailable' }, trial.code.reason));
      return;
    }
    code.append(h('p', { class: 'muted' }, 'Generating…'));
    const result = await api(`/api/trials/${id}/code`);
    clear(code, h('h2', {}, 'Code'));
    if (result.code == null) {
      code.append(h('p', { class: 'warning', id: 'code-unavailable' }, result.reason));
      return;
    }
    code.append(h('p', {}, downloadLink(`/api/export?format=code&ids=${id}`, 'Download code (.py)')),
      h('pre', { class: 'code', id: 'code' }, result.code));
  }

  async function refresh() {
    const trial = await api(`/api/trials/${id}`);
    const selected = h('input', { type: 'checkbox', checked: ctx.selection.has(id), id: 'select-trial' });
    selected.addEventListener('change', () => ctx.selection.toggle(id, selected.checked));
    clear(head, h('h1', {}, `Model #${id} `, badge(trial.status)),
      h('div', { class: 'actions' }, h('label', { class: 'chip' }, selected, 'selected'),
        downloadLink(`/api/export?format=dict&ids=${id}`, 'Download sample (JSON)'),
        trial.code.available ? downloadLink(`/api/export?format=code&ids=${id}`, 'Download code (.py)') : null));
    clear(sample, h('h2', {}, 'Sample'), keyValueTable(Object.entries(trial.sample).map(([k, v]) => [k, fmtValue(v)]),
      'sample'));
    const extra = trial.final && typeof trial.final === 'object'
      ? Object.entries(trial.final).filter(([k]) => k !== 'default').map(([k, v]) => [`final ${k}`, fmtMetric(v)]) : [];
    clear(metrics, h('h2', {}, 'Metrics'), keyValueTable([
      ['final metric', fmtMetric(trial.metric)], ...extra, ['intermediate reports', trial.intermediates.length],
      ['duration', fmtDuration(trial.duration)], ['format', trial.format], ['trial', trial.trial_id ?? '–'],
      ['created', fmtTime(trial.created)],
    ], 'metrics'));
    const numbers = trial.intermediates.map((v) => (v && typeof v === 'object' ? v.default : v));
    chart.setData([{ id, name: `model #${id}`, points: numbers.map((v, i) => [i + 1, v]), color: '#1565c0',
      mode: 'line+markers' }]);
    clear(values, h('summary', {}, `Intermediate values (${numbers.length})`),
      h('table', { class: 'data', id: 'intermediates' }, h('tbody', {}, trial.intermediates.map((v, i) =>
        h('tr', {}, h('td', { class: 'num' }, i + 1), h('td', {}, typeof v === 'object' ? JSON.stringify(v) : fmtMetric(v)))))));
    const start = trial.history[0]?.time ?? trial.created;
    clear(history, h('h2', {}, 'Status history'), h('table', { class: 'data', id: 'history' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Status'), h('th', {}, 'Time'), h('th', {}, 'After'), h('th', {}, 'Reason'))),
      h('tbody', {}, trial.history.map((change) => h('tr', {}, h('td', {}, badge(change.status)),
        h('td', {}, fmtTime(change.time)), h('td', { class: 'num' }, fmtDuration(change.time - start)),
        h('td', { class: 'error' }, (change.error ?? '').split('\n').filter(Boolean).at(-1) ?? ''))))));
    failure.hidden = !trial.error;
    clear(failure, h('h2', {}, 'Failure'), h('pre', { class: 'log', id: 'error' }, trial.error ?? ''));
    await refreshLog(trial);
    if (!codeShown) {
      codeShown = true;
      await showCode(trial);
    }
  }
  // The log grows while the trial runs, without the store changing: follow it.
  const timer = setInterval(() => {
    if (!document.hidden) api(`/api/trials/${id}`).then((t) => t.status === 'training' && refreshLog(t)).catch(() => {});
  }, 2000);
  return { refresh, unmount: () => clearInterval(timer) };
}
