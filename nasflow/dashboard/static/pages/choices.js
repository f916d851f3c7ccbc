// How each choice relates to the metric: per choice, every trained model's metric by its value
// (a slice plot) with each value's count, mean and best; then parallel coordinates over all choices.

import { ParallelPlot, Plot } from '../charts.js';
import { api, clear, fmtMetric, fmtValue, h } from '../dom.js';

function jitter(id) {
  const x = Math.sin(id * 12.9898) * 43758.5453; // deterministic per model, so redraws do not shuffle
  return (x - Math.floor(x) - 0.5) * 0.5;
}

export function choicesPage(root, _route, ctx) {
  const slices = h('div', { class: 'slices', id: 'slices' });
  const parallelBox = h('div', { id: 'parallel-chart' });
  const brushNote = h('p', { class: 'muted', id: 'parallel-note' });
  clear(root,
    h('section', {}, h('h2', {}, 'Metric by choice'), slices),
    h('section', {}, h('h2', {}, 'Parallel coordinates'),
      h('p', { class: 'muted' }, 'Each line is a trained model, colored by its final metric. Drag along an axis to keep ' +
        'a range; double-click to clear.'), parallelBox, brushNote));
  const parallel = new ParallelPlot(parallelBox, {
    onBrush: (rows) => { brushNote.textContent = `${rows.length} of ${parallel.rows.length} models in range.`; },
  });
  const plots = new Map();

  async function refresh() {
    const [{ choices }, data] = await Promise.all([api('/api/choices'), api('/api/parallel')]);
    if (!choices.length) {
      clear(slices, h('p', { class: 'muted' }, 'This space has no choices.'));
      return;
    }
    const shown = new Set();
    choices.forEach((choice, i) => {
      shown.add(choice.label);
      let entry = plots.get(choice.label);
      if (!entry) {
        const box = h('div', { class: 'slice-chart' });
        const table = h('div', {});
        const card = h('div', { class: 'card slice', dataset: { label: choice.label } }, h('h3', {}, choice.label), box,
          table);
        entry = { card, table, plot: null, box };
        plots.set(choice.label, entry);
      }
      slices.append(entry.card);
      const categories = choice.numeric ? null : choice.values.map((v) => fmtValue(v.value));
      const index = new Map(choice.values.map((v, k) => [fmtValue(v.value), k]));
      if (!entry.plot || Boolean(entry.plot.xCategories) !== Boolean(categories)) {
        entry.plot = new Plot(entry.box, { height: 220, xLabel: choice.label, yLabel: 'final metric',
          xCategories: categories, onClick: (s, p) => { location.hash = `#/trial/${p[2]}`; },
          describe: (s, p) => [`model #${p[2]}`, `${choice.label} = ${p[3]}`, `metric ${fmtMetric(p[1])}`] });
      }
      entry.plot.xCategories = categories;
      const points = data.rows.map(([id, metric, vals]) => {
        const value = vals[data.labels.indexOf(choice.label)];
        if (value == null) return null;
        const x = choice.numeric ? value : (index.get(fmtValue(value)) ?? -1) + jitter(id);
        return [x, metric, id, fmtValue(value)];
      }).filter(Boolean);
      entry.plot.setData([{ id: choice.label, name: choice.label, points, color: '#1565c0', mode: 'markers',
        radius: 3 }]);
      const sign = ctx.summary.metric_direction === 'minimize' ? -1 : 1; // lower is better for an error
      const best = sign * Math.max(...choice.values.map((v) => (v.best == null ? -Infinity : sign * v.best)));
      clear(entry.table, h('table', { class: 'data compact' },
        h('thead', {}, h('tr', {}, ['value', 'models', 'trained', 'mean', 'best'].map((t) => h('th', {}, t)))),
        h('tbody', {}, choice.values.map((v) => h('tr', { class: v.best === best && Number.isFinite(best) ? 'best' : null },
          h('td', {}, fmtValue(v.value)), h('td', { class: 'num' }, v.count), h('td', { class: 'num' }, v.trained),
          h('td', { class: 'num' }, fmtMetric(v.mean)), h('td', { class: 'num' }, fmtMetric(v.best)))))),
        choice.distinct > choice.values.length ? h('p', { class: 'muted' },
          `${choice.values.length} of ${choice.distinct} values listed.`) : null);
    });
    for (const [label, entry] of plots) if (!shown.has(label)) { entry.card.remove(); plots.delete(label); }

    const axes = data.labels.map((label) => {
      const choice = choices.find((c) => c.label === label);
      return choice && !choice.numeric ? { name: label, categories: choice.values.map((v) => fmtValue(v.value)) }
        : { name: label };
    });
    const rows = data.rows.map(([id, metric, vals]) => ({ id, values: [...vals.map((v, i) => {
      if (v == null) return null;
      if (!axes[i].categories) return v;
      const k = axes[i].categories.indexOf(fmtValue(v));
      return k < 0 ? null : k;
    }), metric] }));
    parallel.setData([...axes, { name: 'metric' }], rows);
  }
  return { refresh };
}
