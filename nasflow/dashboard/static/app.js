// The dashboard shell: header with the experiment's state (and the stop control when the experiment
// runs in the serving process), navigation, hash routing, and polling for changes. A page is a
// function (root, params, ctx) returning {refresh, unmount}; refresh runs whenever the store changes.

import { api, badge, clear, fmtDuration, h, Selection } from './dom.js';
import { overviewPage } from './pages/overview.js';
import { trialsPage } from './pages/trials.js';
import { curvesPage } from './pages/curves.js';
import { trialPage } from './pages/trial.js';
import { comparePage } from './pages/compare.js';
import { choicesPage } from './pages/choices.js';

const POLL_MS = 1000;
const ROUTES = {
  '': overviewPage, overview: overviewPage, trials: trialsPage, curves: curvesPage, trial: trialPage,
  compare: comparePage, choices: choicesPage,
};
const NAV = [['overview', 'Overview'], ['trials', 'Trials'], ['curves', 'Curves'], ['choices', 'Choices'],
  ['compare', 'Compare']];

const ctx = { summary: null, selection: null, version: null };
let page = null;
let route = null;

function parseHash() {
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const [name = '', ...rest] = path.split('/');
  return { name, arg: rest.join('/'), params: new URLSearchParams(query) };
}

// Changes the page's query without adding a history entry (filters, sort, paging).
ctx.setParams = (params) => {
  const { name, arg } = parseHash();
  const query = params.toString();
  history.replaceState(null, '', `#/${name}${arg ? `/${arg}` : ''}${query ? `?${query}` : ''}`);
};

function renderHeader() {
  const s = ctx.summary;
  const header = document.getElementById('header');
  const state = s.status === 'running' && !s.alive
    ? h('span', { class: 'warning', title: `pid ${s.pid} is not running here` }, 'running? (process not found)')
    : null;
  const stop = s.can_stop ? h('button', { class: 'danger', id: 'stop', onclick: stopExperiment }, 'Stop experiment')
    : s.stopping ? h('span', { class: 'muted' }, 'stopping…') : null;
  clear(header,
    h('a', { class: 'brand', href: '#/' }, 'nasflow'),
    h('span', { class: 'title' }, s.name === s.id ? s.id : `${s.name} (${s.id})`),
    h('span', { id: 'experiment-status' }, badge(s.status)), state,
    h('span', { class: 'muted', title: 'since the experiment was created' }, fmtDuration(s.elapsed)),
    h('span', { class: 'muted' }, `${s.total} models`),
    s.read_only ? h('span', { class: 'muted', title: 'served by nasflow view' }, 'read-only') : null,
    h('span', { class: 'spacer' }), stop);
  const nav = document.getElementById('nav');
  const current = route?.name || 'overview';
  const count = ctx.selection.ids.size;
  clear(nav, NAV.map(([name, text]) => h('a', {
    href: `#/${name}`, class: current === name ? 'active' : null, id: `nav-${name}`,
  }, name === 'compare' && count ? `${text} (${count})` : text)));
}

async function stopExperiment() {
  if (!confirm('Stop the experiment? Running trials are interrupted; `nasflow resume` continues it later.')) return;
  try {
    await api('/api/stop', { method: 'POST', headers: { 'X-Nasflow-Action': 'stop', Accept: 'application/json' } });
  } catch (err) {
    alert(`Could not stop: ${err.message}`);
  }
  await poll(true);
}

function showError(err) {
  const bar = document.getElementById('error');
  bar.hidden = !err;
  bar.textContent = err ? String(err.message || err) : '';
}

async function navigate() {
  const next = parseHash();
  const factory = ROUTES[next.name];
  page?.unmount?.();
  route = next;
  renderHeader();
  const root = document.getElementById('page');
  if (!factory) {
    clear(root, h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Overview')));
    page = null;
    return;
  }
  clear(root);
  page = factory(root, next, ctx);
  try {
    await page.refresh();
    showError(null);
  } catch (err) {
    showError(err);
  }
}

// Polls the store's version; on a change, refreshes the summary and the current page.
async function poll(force = false) {
  try {
    const { version } = await api('/api/version');
    if (version !== ctx.version || force) {
      ctx.version = version;
      ctx.summary = await api('/api/summary');
      renderHeader();
      await page?.refresh();
    }
    showError(null);
  } catch (err) {
    showError(new Error(`Lost contact with the dashboard server (${err.message}); retrying.`));
  }
}

async function main() {
  ctx.summary = await api('/api/summary');
  ctx.version = ctx.summary.version;
  document.title = `nasflow · ${ctx.summary.name}`;
  ctx.selection = new Selection(ctx.summary.id);
  ctx.selection.listeners.push(renderHeader);
  window.addEventListener('hashchange', navigate);
  await navigate();
  const tick = async () => {
    if (!document.hidden) await poll();
    setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
}

main().catch(showError);
