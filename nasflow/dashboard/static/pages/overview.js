// Overview: status, counts by status, elapsed time, the best model, best-so-far over time, export
// of the top models, and the experiment's config.

import { Plot } from '../charts.js';
import {
  api, badge, clear, codeLink, downloadLink, fmtDuration, fmtMetric, fmtTime, fmtValue, h, modelLink, STATUS_COLORS,
  STATUS_ORDER,
} from '../dom.js';

export function overviewPage(root, _route, ctx) {
  const cards = h('div', { class: 'cards' });
  const chartBox = h('div', { id: 'best-chart' });
  const topK = h('input', { type: 'number', min: 1, value: 1, id: 'top-k', class: 'narrow' });
  const exportLinks = h('span', { class: 'actions' });
  const config = h('pre', { id: 'config', class: 'code' });
  clear(root,
    cards,
    h('section', {}, h('h2', {}, 'Best so far'), chartBox),
    h('section', {}, h('h2', {}, 'Export the best models'),
      h('p', {}, 'Top ', topK, ' trained models by final metric: ', exportLinks)),
    h('section', {}, h('h2', {}, 'Config'), config));
  const chart = new Plot(chartBox, {
    height: 280, xLabel: 'time since start (s)', yLabel: 'final metric',
    onClick: (series, point) => { if (point[2] != null) location.hash = `#/trial/${point[2]}`; },
    describe: (series, point) => [`${series.name}`, `model #${point[2]}: ${fmtMetric(point[1])}`,
      `after ${fmtDuration(point[0])}`],
  });
  const updateExport = () => {
    const k = Math.max(1, Number(topK.value) || 1);
    clear(exportLinks,
      downloadLink(`/api/export?format=dict&top_k=${k}`, 'Download samples (JSON)'), ' ',
      codeLink(ctx.summary, `/api/export?format=code&top_k=${k}`, 'Download code (.py)'));
  };
  topK.addEventListener('input', updateExport);
  updateExport();

  async function refresh() {
    const s = ctx.summary;
    const progress = await api('/api/progress');
    const counts = STATUS_ORDER.filter((status) => s.counts[status]).map((status) => [status, s.counts[status]]);
    const bar = h('div', { class: 'count-bar' }, counts.map(([status, n]) => h('span', {
      style: `flex: ${n}; background: ${STATUS_COLORS[status]}`, title: `${status}: ${n}`,
    })));
    clear(cards,
      h('div', { class: 'card' }, h('div', { class: 'label' }, 'Status'), badge(s.status),
        h('div', { class: 'muted' }, s.status === 'running' ? `pid ${s.pid}` : `ended ${fmtTime(s.updated)}`)),
      h('div', { class: 'card' }, h('div', { class: 'label' }, 'Elapsed'), h('div', { class: 'big' }, fmtDuration(s.elapsed)),
        h('div', { class: 'muted' }, `created ${fmtTime(s.created)}`)),
      h('div', { class: 'card wide', id: 'counts' }, h('div', { class: 'label' }, `Models: ${s.total}`), bar,
        h('div', { class: 'legend' }, counts.map(([status, n]) => h('span', { class: 'count', dataset: { status } },
          badge(status), ` ${n}`)))),
      h('div', { class: 'card wide', id: 'best' }, h('div', { class: 'label' }, 'Best model'),
        s.best ? [h('div', { class: 'big' }, fmtMetric(s.best.metric), ' ', modelLink(s.best.id)),
          h('div', { class: 'muted' }, Object.entries(s.best.sample).map(([k, v]) => `${k}=${fmtValue(v)}`).join(', '))]
          : h('div', { class: 'muted' }, 'No model has finished training yet.')));
    const sign = progress.metric_direction === 'minimize' ? -1 : 1; // lower is better for an error
    let best = -Infinity;
    const steps = [];
    const points = progress.times.map((t, i) => {
      const metric = progress.metrics[i];
      if (sign * metric > sign * best || steps.length === 0) { best = metric; steps.push([t, metric, progress.ids[i]]); }
      return [t, metric, progress.ids[i]];
    });
    if (steps.length) steps.push([points[points.length - 1][0], best, steps[steps.length - 1][2]]);
    const end = Math.max(1, progress.times.at(-1) ?? 0, s.elapsed) * 1.02; // the time axis starts at the start
    chart.setData([
      { id: 'all', name: 'trained model', points, color: '#9e9e9e', mode: 'markers', radius: 2.5 },
      { id: 'best', name: 'best so far', points: steps, color: '#1565c0', mode: 'step' },
    ], { xDomain: [0, end] });
    config.textContent = JSON.stringify(s.config, null, 2);
  }
  return { refresh };
}
