// Canvas charts: a line/scatter plot (curves, best-so-far, per-choice slices) and parallel
// coordinates. Canvas keeps 10,000 curves responsive; each chart keeps what it drew on
// `container.plot` (series, and toPixel for a data point), which the browser tests read back.

import { h } from './dom.js';

const MARGIN = { left: 64, right: 18, top: 14, bottom: 42 };
const AXIS = '#555';
const GRID = '#e6e6e6';

export function niceTicks(min, max, count = 6) {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const step = 10 ** Math.floor(Math.log10(raw));
  const unit = [1, 2, 2.5, 5, 10].map((m) => m * step).find((s) => s >= raw) ?? raw;
  const ticks = [];
  for (let t = Math.ceil(min / unit) * unit; t <= max + unit * 1e-9; t += unit) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function tickLabel(value) {
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e5 || abs < 1e-3)) return value.toExponential(1);
  return String(Number(value.toPrecision(6)));
}

function domain(values, pad = 0.05) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v == null || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - (Math.abs(lo) || 1) * 0.5, hi + (Math.abs(hi) || 1) * 0.5];
  const span = hi - lo;
  return [lo - span * pad, hi + span * pad];
}

// A canvas sized to its container (in CSS pixels, sharp on high-density screens), redrawn on resize.
class CanvasChart {
  constructor(container, height) {
    this.container = container;
    this.height = height;
    this.canvas = h('canvas', { class: 'chart', role: 'img' });
    this.tooltip = h('div', { class: 'tooltip', hidden: true });
    container.replaceChildren(this.canvas, this.tooltip);
    container.classList.add('chart-box');
    container.plot = this;
    this.resizer = new ResizeObserver(() => this.draw());
    this.resizer.observe(container);
  }

  context() {
    const width = Math.max(200, this.container.clientWidth);
    const ratio = window.devicePixelRatio || 1;
    this.width = width;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(this.height * ratio);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${this.height}px`;
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, this.height);
    ctx.font = '12px system-ui, sans-serif';
    return ctx;
  }

  showTooltip(x, y, lines) {
    this.tooltip.replaceChildren(...lines.map((line) => h('div', {}, line)));
    this.tooltip.hidden = false;
    const left = Math.min(x + 14, this.width - 220);
    this.tooltip.style.left = `${Math.max(0, left)}px`;
    this.tooltip.style.top = `${Math.max(0, y - 10)}px`;
  }

  hideTooltip() { this.tooltip.hidden = true; }
}

// series: [{id, name, points: [[x, y], ...], color, mode: 'line'|'markers'|'step'|'line+markers', faint}]
// xCategories: labels for a categorical x axis (x is then the category's index); integerX: steps.
export class Plot extends CanvasChart {
  constructor(container, { height = 320, xLabel = '', yLabel = '', xCategories = null, onClick = null,
    describe = null, integerX = false } = {}) {
    super(container, height);
    Object.assign(this, { xLabel, yLabel, xCategories, onClick, describe, integerX, series: [] });
    this.canvas.addEventListener('mousemove', (event) => this.hover(event));
    this.canvas.addEventListener('mouseleave', () => this.hideTooltip());
    this.canvas.addEventListener('click', (event) => {
      const hit = this.nearest(event);
      if (hit && this.onClick) this.onClick(hit.series, hit.point);
    });
  }

  setData(series, { xDomain = null, yDomain = null } = {}) {
    this.series = series;
    const xs = [];
    const ys = [];
    for (const s of series) for (const [x, y] of s.points) { xs.push(x); if (y != null) ys.push(y); }
    this.xDomain = xDomain ?? (this.xCategories ? [-0.5, this.xCategories.length - 0.5] : domain(xs, 0.02));
    this.yDomain = yDomain ?? domain(ys);
    this.draw();
  }

  toPixel(x, y) {
    const [x0, x1] = this.xDomain;
    const [y0, y1] = this.yDomain;
    const w = this.width - MARGIN.left - MARGIN.right;
    const hgt = this.height - MARGIN.top - MARGIN.bottom;
    return [MARGIN.left + ((x - x0) / (x1 - x0)) * w, MARGIN.top + (1 - (y - y0) / (y1 - y0)) * hgt];
  }

  draw() {
    if (!this.xDomain) return;
    const ctx = this.context();
    this.axes(ctx);
    const faint = this.series.filter((s) => s.faint);
    const strong = this.series.filter((s) => !s.faint);
    // Faint series (thousands of curves) are stroked together, one path per color.
    const byColor = new Map();
    for (const s of faint) {
      if (!byColor.has(s.color)) byColor.set(s.color, []);
      byColor.get(s.color).push(s);
    }
    for (const [color, group] of byColor) {
      ctx.globalAlpha = Math.max(0.05, Math.min(0.45, 40 / group.length));
      ctx.strokeStyle = color;
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (const s of group) this.trace(ctx, s);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    for (const s of strong) {
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      ctx.lineWidth = 2;
      if (s.mode !== 'markers') {
        ctx.beginPath();
        this.trace(ctx, s);
        ctx.stroke();
      }
      if (s.mode === 'markers' || s.mode === 'line+markers') {
        ctx.globalAlpha = Math.max(0.25, Math.min(1, 150 / s.points.length)); // dense clouds stay readable
        for (const [x, y] of s.points) {
          if (y == null) continue;
          const [px, py] = this.toPixel(x, y);
          ctx.beginPath();
          ctx.arc(px, py, s.radius ?? 3.5, 0, 2 * Math.PI);
          ctx.fill();
        }
        ctx.globalAlpha = 1;
      }
    }
  }

  trace(ctx, s) {
    let open = false;
    let last = null;
    for (const [x, y] of s.points) {
      if (y == null) { open = false; continue; }
      const [px, py] = this.toPixel(x, y);
      if (!open) ctx.moveTo(px, py);
      else if (s.mode === 'step') ctx.lineTo(px, last);
      if (open || s.mode !== 'step') ctx.lineTo(px, py);
      open = true;
      last = py;
    }
  }

  axes(ctx) {
    const [x0, x1] = this.xDomain;
    const [y0, y1] = this.yDomain;
    const right = this.width - MARGIN.right;
    const bottom = this.height - MARGIN.bottom;
    ctx.strokeStyle = GRID;
    ctx.fillStyle = AXIS;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const t of niceTicks(y0, y1, 5)) {
      const [, py] = this.toPixel(x0, t);
      ctx.beginPath(); ctx.moveTo(MARGIN.left, py); ctx.lineTo(right, py); ctx.stroke();
      ctx.fillText(tickLabel(t), MARGIN.left - 6, py);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const xTicks = this.xCategories ? this.xCategories.map((_, i) => i)
      : niceTicks(x0, x1, 8).filter((t) => !this.integerX || Number.isInteger(t));
    for (const t of xTicks) {
      const [px] = this.toPixel(t, y0);
      const text = this.xCategories ? String(this.xCategories[t]).slice(0, 18) : tickLabel(t);
      ctx.fillText(text, px, bottom + 6);
    }
    ctx.strokeStyle = AXIS;
    ctx.beginPath(); ctx.moveTo(MARGIN.left, MARGIN.top); ctx.lineTo(MARGIN.left, bottom); ctx.lineTo(right, bottom);
    ctx.stroke();
    ctx.fillText(this.xLabel, (MARGIN.left + right) / 2, bottom + 24);
    ctx.save();
    ctx.translate(14, (MARGIN.top + bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = 'middle';
    ctx.fillText(this.yLabel, 0, 0);
    ctx.restore();
  }

  nearest(event) {
    const rect = this.canvas.getBoundingClientRect();
    const mx = event.clientX - rect.left;
    const my = event.clientY - rect.top;
    let best = null;
    let bestDistance = 12 * 12;
    for (const s of this.series) {
      for (const point of s.points) {
        if (point[1] == null) continue;
        const [px, py] = this.toPixel(point[0], point[1]);
        const d = (px - mx) ** 2 + (py - my) ** 2;
        if (d < bestDistance) { bestDistance = d; best = { series: s, point, px, py }; }
      }
    }
    return best;
  }

  hover(event) {
    const hit = this.nearest(event);
    if (!hit) { this.hideTooltip(); this.canvas.style.cursor = ''; return; }
    this.canvas.style.cursor = this.onClick ? 'pointer' : '';
    const lines = this.describe ? this.describe(hit.series, hit.point)
      : [hit.series.name ?? '', `${this.xLabel} ${tickLabel(hit.point[0])}: ${tickLabel(hit.point[1])}`];
    this.showTooltip(hit.px, hit.py, lines);
  }
}

// Viridis-like scale from low (purple) to high (yellow) metric.
export function metricColor(t) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// axes: [{name, categories?: [...]}] (numeric axes scale to their rows' range); rows: [{id, values: [...]}],
// the last axis colors the lines. Dragging along an axis keeps only the lines inside that range.
export class ParallelPlot extends CanvasChart {
  constructor(container, { height = 380, onBrush = null } = {}) {
    super(container, height);
    this.onBrush = onBrush;
    this.brushes = new Map();
    this.canvas.addEventListener('mousedown', (event) => this.startBrush(event));
    this.canvas.addEventListener('dblclick', () => { this.brushes.clear(); this.draw(); this.brushed(); });
  }

  setData(axes, rows) {
    this.axesSpec = axes.map((axis, i) => ({
      ...axis,
      domain: axis.categories ? [-0.5, axis.categories.length - 0.5] : domain(rows.map((r) => r.values[i]), 0.02),
    }));
    this.rows = rows;
    this.draw();
    this.brushed();
  }

  axisX(i) {
    const n = this.axesSpec.length;
    return MARGIN.left + ((this.width - MARGIN.left - MARGIN.right - 40) * i) / Math.max(1, n - 1);
  }

  axisY(i, value) {
    const [lo, hi] = this.axesSpec[i].domain;
    const top = MARGIN.top + 14;
    const bottom = this.height - MARGIN.bottom;
    return bottom - ((value - lo) / (hi - lo)) * (bottom - top);
  }

  inBrushes(row) {
    for (const [i, [a, b]] of this.brushes) {
      const y = this.axisY(i, row.values[i]);
      if (row.values[i] == null || y < Math.min(a, b) || y > Math.max(a, b)) return false;
    }
    return true;
  }

  draw() {
    if (!this.axesSpec) return;
    const ctx = this.context();
    const last = this.axesSpec.length - 1;
    const [lo, hi] = domain(this.rows.map((r) => r.values[last]), 0);
    ctx.lineWidth = 1;
    for (const pass of [false, true]) {
      ctx.globalAlpha = pass ? 0.75 : 0.08;
      for (const row of this.rows) {
        if (this.inBrushes(row) !== pass) continue;
        ctx.strokeStyle = pass ? metricColor((row.values[last] - lo) / (hi - lo || 1)) : '#999';
        ctx.beginPath();
        row.values.forEach((v, i) => {
          if (v == null) return;
          const x = this.axisX(i);
          const y = this.axisY(i, v);
          if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        });
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    this.axesSpec.forEach((axis, i) => this.drawAxis(ctx, axis, i));
  }

  drawAxis(ctx, axis, i) {
    const x = this.axisX(i);
    const top = MARGIN.top + 14;
    const bottom = this.height - MARGIN.bottom;
    ctx.strokeStyle = AXIS;
    ctx.fillStyle = AXIS;
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.fillText(axis.name.slice(0, 20), x, top - 4);
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    const ticks = axis.categories ? axis.categories.map((_, k) => k) : niceTicks(...axis.domain, 5);
    for (const t of ticks) {
      const label = axis.categories ? String(axis.categories[t]).slice(0, 14) : tickLabel(t);
      ctx.fillText(label, x + 4, this.axisY(i, t));
    }
    const brush = this.brushes.get(i);
    if (brush) {
      ctx.fillStyle = 'rgba(21, 101, 192, 0.18)';
      ctx.fillRect(x - 8, Math.min(...brush), 16, Math.abs(brush[1] - brush[0]));
    }
  }

  startBrush(event) {
    const rect = this.canvas.getBoundingClientRect();
    const mx = event.clientX - rect.left;
    const axis = this.axesSpec?.findIndex((_, i) => Math.abs(this.axisX(i) - mx) < 12);
    if (axis == null || axis < 0) return;
    const y0 = event.clientY - rect.top;
    const move = (e) => { this.brushes.set(axis, [y0, e.clientY - rect.top]); this.draw(); };
    const up = (e) => {
      window.removeEventListener('mousemove', move);
      window.removeEventListener('mouseup', up);
      if (Math.abs(e.clientY - rect.top - y0) < 3) this.brushes.delete(axis);
      this.draw();
      this.brushed();
    };
    window.addEventListener('mousemove', move);
    window.addEventListener('mouseup', up);
  }

  brushed() {
    if (this.onBrush) this.onBrush(this.rows.filter((row) => this.inBrushes(row)));
  }
}
