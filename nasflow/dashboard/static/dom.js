// DOM building, formatting and fetching helpers shared by every page. Text is always inserted as
// text nodes (never as HTML), so labels, errors and logs from a store cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'style') el.style.cssText = value; // through CSSOM: the CSP forbids style attributes
    else if (key === 'value' || key === 'checked') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export async function api(path, options = {}) {
  const response = await fetch(path, { headers: { Accept: 'application/json' }, ...options });
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

export const STATUS_ORDER = ['trained', 'training', 'failed', 'interrupted', 'invalid', 'retrying', 'frozen',
  'initialized'];
export const STATUS_COLORS = {
  trained: '#2e7d32', training: '#1565c0', failed: '#c62828', interrupted: '#ef6c00', invalid: '#757575',
  retrying: '#6a1b9a', frozen: '#9e9e9e', initialized: '#bdbdbd',
};
export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2',
  '#7f7f7f', '#bcbd22'];

export function badge(status) {
  return h('span', { class: `badge status-${status}` }, status ?? 'unknown');
}

export function fmtMetric(value) {
  if (value == null) return '–';
  if (typeof value !== 'number') return String(value);
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toPrecision(6)));
}

export function fmtDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '–';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function fmtTime(timestamp) {
  return timestamp == null ? '–' : new Date(timestamp * 1000).toLocaleString();
}

// A sample value as it reads in the user's code: strings bare, everything else as JSON.
export function fmtValue(value) {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export function downloadLink(href, text) {
  return h('a', { class: 'button', href, download: '' }, text);
}

// Code downloads exist only for graph-format models; elsewhere the page says why.
export function codeLink(summary, href, text) {
  return summary.formats.includes('graph') ? downloadLink(href, text)
    : h('span', { class: 'muted' }, "Code export needs model_format='graph'.");
}

export function modelLink(id) {
  return h('a', { href: `#/trial/${id}` }, `#${id}`);
}

// The set of selected model ids, kept per experiment for this browser tab.
export class Selection {
  constructor(experimentId) {
    this.key = `nasflow-selection-${experimentId}`;
    this.ids = new Set(JSON.parse(sessionStorage.getItem(this.key) || '[]'));
    this.listeners = [];
  }
  has(id) { return this.ids.has(id); }
  toggle(id, on) {
    if (on ?? !this.ids.has(id)) this.ids.add(id); else this.ids.delete(id);
    this.changed();
  }
  set(ids) { this.ids = new Set(ids); this.changed(); }
  list() { return [...this.ids].sort((a, b) => a - b); }
  changed() {
    sessionStorage.setItem(this.key, JSON.stringify(this.list()));
    for (const listener of this.listeners) listener();
  }
}
