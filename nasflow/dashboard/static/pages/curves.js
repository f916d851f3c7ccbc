// Intermediate-metric curves: every model that reported (faint, colored by status) with the
// selected ones highlighted, or only the selected ones. Clicking a curve opens its model.

import { Plot } from '../charts.js';
import { api, clear, fmtMetric, h, modelLink, PALETTE, STATUS_COLORS } from '../dom.js';

export function curvesPage(root, route, ctx) {
  const params = route.params;
  const fromUrl = (params.get('ids') || '').split(',').filter(Boolean).map(Number);
  if (fromUrl.length) ctx.selection.set(fromUrl);
  const keySelect = h('select', { id: 'metric-key' }, ctx.summary.metric_keys.map((k) => h('option', { value: k }, k)));
  keySelect.value = params.get('key') || 'default';
  const showSelect = h('select', { id: 'curve-scope' },
    h('option', { value: 'all' }, 'all models'), h('option', { value: 'selected' }, 'selected models only'));
  showSelect.value = params.get('show') || 'all';
  const chartBox = h('div', { id: 'curve-chart' });
  const legend = h('div', { class: 'legend', id: 'curve-legend' });
  const note = h('p', { class: 'muted' });
  clear(root,
    h('div', { class: 'toolbar' }, h('label', { class: 'field' }, h('span', {}, 'Metric'), keySelect),
      h('label', { class: 'field' }, h('span', {}, 'Show'), showSelect),
      h('span', { class: 'muted' }, 'Select models in the table, or click a curve to open its model.')),
    chartBox, legend, note);
  const chart = new Plot(chartBox, {
    height: 420, xLabel: 'step', integerX: true, yLabel: 'intermediate metric',
    onClick: (series) => { location.hash = `#/trial/${series.id}`; },
    describe: (series, point) => [`model #${series.id} (${series.status})`, `step ${point[0]}: ${fmtMetric(point[1])}`],
  });
  for (const [el, name] of [[keySelect, 'key'], [showSelect, 'show']]) {
    el.addEventListener('change', () => { params.set(name, el.value); ctx.setParams(params); refresh(); });
  }

  let latest = 0;
  async function refresh() {
    const request = ++latest;
    const selected = ctx.selection.list();
    const onlySelected = showSelect.value === 'selected';
    const ids = onlySelected ? selected.join(',') || 'none' : 'all';
    const key = encodeURIComponent(keySelect.value);
    const data = ids === 'none' ? { series: [] } : await api(`/api/curves?ids=${ids}&key=${key}`);
    if (request !== latest) return;
    const colors = new Map(selected.map((id, i) => [id, PALETTE[i % PALETTE.length]]));
    const statusOf = new Map();
    for (const [status, members] of Object.entries(data.statuses ?? {})) for (const id of members) statusOf.set(id, status);
    const series = data.series.map((s) => ({
      id: s.id, status: statusOf.get(s.id), name: `model #${s.id}`,
      points: s.values.map((v, i) => [i + 1, v]),
      color: colors.get(s.id) ?? STATUS_COLORS[statusOf.get(s.id)] ?? '#999',
      faint: !colors.has(s.id), mode: 'line+markers',
    }));
    series.sort((a, b) => Number(!a.faint) - Number(!b.faint)); // highlighted curves on top
    chart.setData(series);
    const shown = series.filter((s) => !s.faint);
    clear(legend, shown.map((s) => h('span', { class: 'legend-item', dataset: { id: s.id } },
      h('span', { class: 'swatch', style: `background: ${s.color}` }), modelLink(s.id),
      ` ${s.points.length} points, last ${fmtMetric(s.points.at(-1)?.[1])}`)));
    note.textContent = `${series.length} models reported intermediate metrics` +
      (selected.length ? `; ${shown.length} of the ${selected.length} selected did.` : '.');
  }
  return { refresh };
}
