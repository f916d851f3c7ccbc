// Compare selected models side by side: choices, metrics, durations (rows whose values differ are
// marked), and their curves on one chart.

import { Plot } from '../charts.js';
import {
  api, badge, clear, codeLink, downloadLink, fmtDuration, fmtMetric, fmtValue, h, modelLink, PALETTE,
} from '../dom.js';

const MAX_COMPARED = 20;

export function comparePage(root, route, ctx) {
  const fromUrl = (route.params.get('ids') || '').split(',').filter(Boolean).map(Number);
  if (fromUrl.length) ctx.selection.set(fromUrl);
  const body = h('div', {});
  const chartBox = h('div', { id: 'compare-chart' });
  clear(root, body, h('section', {}, h('h2', {}, 'Intermediate metrics'), chartBox));
  const chart = new Plot(chartBox, { height: 300, xLabel: 'step', integerX: true, yLabel: 'intermediate metric',
    onClick: (series) => { location.hash = `#/trial/${series.id}`; } });

  async function refresh() {
    const ids = ctx.selection.list().slice(0, MAX_COMPARED);
    if (!ids.length) {
      clear(body, h('p', { class: 'muted' }, 'Nothing selected. Tick models in the ', h('a', { href: '#/trials' },
        'trials table'), ' to compare them here.'));
      chart.setData([]);
      return;
    }
    const trials = await Promise.all(ids.map((id) => api(`/api/trials/${id}`)));
    const labels = [...new Set(trials.flatMap((t) => Object.keys(t.sample)))];
    const rows = [
      ['Status', trials.map((t) => badge(t.status)), trials.map((t) => t.status)],
      ['Final metric', trials.map((t) => fmtMetric(t.metric))],
      ['Steps', trials.map((t) => t.intermediates.length)],
      ['Duration', trials.map((t) => fmtDuration(t.duration))],
      ...labels.map((label) => [label, trials.map((t) => (label in t.sample ? fmtValue(t.sample[label]) : '–'))]),
    ];
    const sign = ctx.summary.metric_direction === 'minimize' ? -1 : 1; // lower is better for an error
    const best = sign * Math.max(...trials.map((t) => (typeof t.metric === 'number' ? sign * t.metric : -Infinity)));
    const query = ids.join(',');
    clear(body,
      h('div', { class: 'actions' }, `${ids.length} models`, ctx.selection.ids.size > MAX_COMPARED
        ? h('span', { class: 'warning' }, ` (the first ${MAX_COMPARED} of ${ctx.selection.ids.size} selected)`) : null,
      downloadLink(`/api/export?format=dict&ids=${query}`, 'Export samples (JSON)'),
      codeLink(ctx.summary, `/api/export?format=code&ids=${query}`, 'Export code (.py)')),
      h('div', { class: 'table-scroll' }, h('table', { class: 'data', id: 'compare-table' },
        h('thead', {}, h('tr', {}, h('th', {}, ''), trials.map((t, i) => h('th', {},
          h('span', { class: 'swatch', style: `background: ${PALETTE[i % PALETTE.length]}` }), modelLink(t.id),
          h('button', { type: 'button', class: 'link', title: 'Remove from the comparison',
            onclick: () => { ctx.selection.toggle(t.id, false); refresh(); } }, '×'))))),
        h('tbody', {}, rows.map(([name, cells, raw]) => {
          const keys = (raw ?? cells).map(String);
          const differs = new Set(keys).size > 1;
          return h('tr', { class: differs ? 'differs' : null }, h('th', {}, name), cells.map((cell, i) => h('td', {
            class: name === 'Final metric' && trials[i].metric === best ? 'best' : null,
          }, cell)));
        })))));
    chart.setData(trials.map((t, i) => ({
      id: t.id, name: `model #${t.id}`, color: PALETTE[i % PALETTE.length], mode: 'line+markers',
      points: t.intermediates.map((v, k) => [k + 1, v && typeof v === 'object' ? v.default : v]),
    })));
  }
  return { refresh };
}
