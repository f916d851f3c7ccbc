// Trials table: server-side sorting, filtering and paging (the page's query string is the API's),
// selection for comparing, plotting and exporting.

import {
  api, badge, clear, codeLink, downloadLink, fmtDuration, fmtMetric, fmtValue, h, modelLink, STATUS_ORDER,
} from '../dom.js';

const PAGE_SIZES = [25, 50, 100, 200];
const CHOICES_EVERY_MS = 10000;
const COLUMNS = [['id', 'Model'], ['status', 'Status'], ['metric', 'Metric'], ['steps', 'Steps'],
  ['duration', 'Duration']];

function debounce(fn, ms = 300) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

export function trialsPage(root, route, ctx) {
  const params = route.params;
  const filters = h('form', { class: 'filters', id: 'filters', onsubmit: (e) => e.preventDefault() });
  const actions = h('div', { class: 'actions', id: 'selection-actions' });
  const table = h('table', { id: 'trials-table', class: 'data' });
  const pager = h('div', { class: 'pager', id: 'pager' });
  clear(root, filters, actions, h('div', { class: 'table-scroll' }, table), pager);
  let choices = [];
  let structure = '';
  let lastRows = [];
  const counters = []; // [element, () => text]: counts updated in place, so typing is never interrupted
  const counts = new Map();

  const update = (changes, resetPage = true) => {
    for (const [key, value] of Object.entries(changes)) {
      if (value === '' || value == null) params.delete(key); else params.set(key, value);
    }
    if (resetPage) params.delete('offset');
    ctx.setParams(params);
    refresh().catch((err) => renderError(err));
  };
  const renderError = (err) => clear(pager, h('span', { class: 'warning' }, err.message));

  function numberInput(name, placeholder) {
    const input = h('input', { type: 'number', step: 'any', id: `filter-${name.replace('_', '-')}`, placeholder,
      class: 'narrow', value: params.get(name) ?? '' });
    input.addEventListener('input', debounce(() => update({ [name]: input.value.trim() })));
    return input;
  }

  function renderFilters() {
    counters.length = 0;
    const statuses = new Set((params.get('status') || '').split(',').filter(Boolean));
    const statusBoxes = STATUS_ORDER.filter((s) => ctx.summary.counts[s] || statuses.has(s)).map((status) => {
      const box = h('input', { type: 'checkbox', id: `filter-status-${status}`, checked: statuses.has(status) });
      box.addEventListener('change', () => {
        if (box.checked) statuses.add(status); else statuses.delete(status);
        update({ status: [...statuses].join(',') });
      });
      const count = h('span', {});
      counters.push([count, () => ` ${ctx.summary.counts[status] ?? 0}`]);
      return h('label', { class: 'chip' }, box, badge(status), count);
    });
    const error = h('input', { type: 'search', id: 'filter-error', placeholder: 'error contains…',
      value: params.get('error') ?? '' });
    error.addEventListener('input', debounce(() => update({ error: error.value.trim() })));
    const choiceSelects = choices.map((choice, i) => {
      const current = params.get(`c.${choice.label}`) ?? '';
      const select = h('select', { id: `filter-choice-${i}`, dataset: { label: choice.label } },
        h('option', { value: '' }, 'any'),
        choice.values.map((v) => {
          const option = h('option', { value: JSON.stringify(v.value) });
          counters.push([option, () => `${fmtValue(v.value)} (${counts.get(`${i}:${option.value}`) ?? 0})`]);
          return option;
        }));
      select.value = current;
      select.addEventListener('change', () => update({ [`c.${choice.label}`]: select.value }));
      return h('label', { class: 'field' }, h('span', {}, choice.label), select);
    });
    clear(filters,
      h('div', { class: 'row' }, h('span', { class: 'label' }, 'Status'), statusBoxes),
      h('div', { class: 'row' },
        h('label', { class: 'field' }, h('span', {}, 'Metric'), numberInput('metric_min', 'min'), '–',
          numberInput('metric_max', 'max')),
        h('label', { class: 'field' }, h('span', {}, 'Duration (s)'), numberInput('duration_min', 'min'), '–',
          numberInput('duration_max', 'max')),
        h('label', { class: 'field' }, h('span', {}, 'Failure'), error),
        h('button', { type: 'button', onclick: () => {
          for (const key of [...params.keys()]) if (key !== 'sort' && key !== 'order' && key !== 'limit') params.delete(key);
          ctx.setParams(params);
          renderFilters();
          refresh();
        } }, 'Clear filters')),
      choiceSelects.length ? h('div', { class: 'row' }, h('span', { class: 'label' }, 'Choices'), choiceSelects) : null);
  }

  function renderActions() {
    const ids = ctx.selection.list();
    const query = ids.join(',');
    clear(actions, ids.length === 0 ? h('span', { class: 'muted' }, 'Select models to compare, plot or export them.') : [
      h('span', { id: 'selected-count' }, `${ids.length} selected`),
      h('a', { class: 'button', href: `#/compare?ids=${query}`, id: 'compare-selected' }, 'Compare'),
      h('a', { class: 'button', href: `#/curves?ids=${query}` }, 'Curves'),
      downloadLink(`/api/export?format=dict&ids=${query}`, 'Export samples (JSON)'),
      codeLink(ctx.summary, `/api/export?format=code&ids=${query}`, 'Export code (.py)'),
      h('button', { type: 'button', onclick: () => { ctx.selection.set([]); renderActions(); renderTable(); } },
        'Clear selection'),
    ]);
  }

  function sortHeader(key, text) {
    const active = (params.get('sort') || 'id') === key;
    const descending = params.get('order') === 'desc';
    return h('th', { class: active ? 'sorted' : null, dataset: { sort: key }, title: 'Sort', onclick: () => {
      update({ sort: key, order: active && !descending ? 'desc' : 'asc' }, false);
    } }, text, active ? (descending ? ' ▼' : ' ▲') : '');
  }

  function renderTable(labels = ctx.summary.labels) {
    const all = h('input', { type: 'checkbox', title: 'Select this page',
      checked: lastRows.length > 0 && lastRows.every((r) => ctx.selection.has(r.id)) });
    all.addEventListener('change', () => {
      for (const row of lastRows) ctx.selection.ids[all.checked ? 'add' : 'delete'](row.id);
      ctx.selection.changed();
      renderActions();
      renderTable(labels);
    });
    clear(table,
      h('thead', {}, h('tr', {}, h('th', {}, all), COLUMNS.map(([key, text]) => sortHeader(key, text)),
        labels.map((label) => sortHeader(`choice:${label}`, label)), sortHeader('trial', 'Trial'),
        sortHeader('error', 'Failure reason'))),
      h('tbody', {}, lastRows.map((row) => {
        const box = h('input', { type: 'checkbox', checked: ctx.selection.has(row.id), dataset: { id: row.id } });
        box.addEventListener('change', () => { ctx.selection.toggle(row.id, box.checked); renderActions(); });
        return h('tr', { dataset: { id: row.id, status: row.status } },
          h('td', {}, box), h('td', {}, modelLink(row.id)), h('td', { class: 'status' }, badge(row.status)),
          h('td', { class: 'num metric' }, fmtMetric(row.metric)), h('td', { class: 'num' }, row.steps),
          h('td', { class: 'num' }, fmtDuration(row.duration)),
          labels.map((label) => h('td', { class: 'choice' }, label in row.sample ? fmtValue(row.sample[label]) : '')),
          h('td', { class: 'muted' }, row.trial_id ?? ''),
          h('td', { class: 'error', title: row.error ?? '' }, row.error ?? ''));
      })));
    if (!lastRows.length) {
      table.append(h('tbody', {}, h('tr', {}, h('td', { colspan: 8 + labels.length, class: 'muted' },
        'No models match these filters.'))));
    }
  }

  function renderPager(total, offset, limit) {
    const size = h('select', { id: 'page-size' }, PAGE_SIZES.map((n) => h('option', { value: n }, `${n} / page`)));
    size.value = String(limit);
    size.addEventListener('change', () => update({ limit: size.value }));
    const go = (to) => update({ offset: Math.max(0, to) || '' }, false);
    clear(pager,
      h('button', { type: 'button', disabled: offset <= 0, onclick: () => go(0) }, '« First'),
      h('button', { type: 'button', disabled: offset <= 0, onclick: () => go(offset - limit) }, '‹ Previous'),
      h('span', { id: 'page-info' }, total ? `${offset + 1}–${Math.min(total, offset + limit)} of ${total}` : '0 of 0'),
      h('button', { type: 'button', disabled: offset + limit >= total, onclick: () => go(offset + limit) }, 'Next ›'),
      h('button', { type: 'button', disabled: offset + limit >= total,
        onclick: () => go(Math.floor((total - 1) / limit) * limit) }, 'Last »'),
      size);
  }

  let latest = 0;
  let choiceList = null;
  let choicesAt = -Infinity;
  async function refresh() {
    const query = new URLSearchParams(params);
    if (!query.has('limit')) query.set('limit', '50');
    const request = ++latest;
    // The filters' value lists scan every model: refreshed at most every CHOICES_EVERY_MS while trials run.
    const fresh = performance.now() - choicesAt > CHOICES_EVERY_MS || ctx.summary.labels.length !== choices.length;
    const [page, list] = await Promise.all([api(`/api/trials?${query}`), fresh ? api('/api/choices') : choiceList]);
    if (request !== latest) return; // a newer query (the user typing, or a live update) answers instead
    if (fresh) { choiceList = list; choicesAt = performance.now(); }
    const key = JSON.stringify([ctx.summary.labels, Object.keys(ctx.summary.counts).sort(),
      choiceList.choices.map((c) => [c.label, c.values.map((v) => v.value)])]);
    counts.clear();
    choiceList.choices.forEach((c, i) => c.values.forEach((v) => counts.set(`${i}:${JSON.stringify(v.value)}`, v.count)));
    if (key !== structure) {
      choices = choiceList.choices;
      structure = key;
      renderFilters();
    }
    for (const [el, text] of counters) el.textContent = text();
    lastRows = page.rows;
    renderActions();
    renderTable(page.labels);
    renderPager(page.total, page.offset, page.limit);
  }
  return { refresh };
}
