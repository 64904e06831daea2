// People: search as you type (debounced), by lifecycle; the URL keeps the
// query so that a reload, a shared link or "back" shows the same results.

import { apiGet, queryString } from './api.js';
import {
  alertRegion, badge, clearRegion, dataTable, debounce, el, field, isAbort,
  listText, loadMore, pageHeading, personLink, select, showError,
} from './ui.js';

const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 200;

/** Lifecycle states: API code, label, badge kind. */
const LIFECYCLES = [
  ['PENDING', 'Pending', 'info'],
  ['ACTIVE', 'Active', 'ok'],
  ['SUSPENDED', 'Suspended', 'warn'],
  ['DEPROVISIONED', 'Deprovisioned', 'muted'],
  ['NONE', 'None', 'muted'],
];

/** "ACTIVE" → "Active"; null (no hire known yet) → "None". */
export function lifecycleLabel(code) {
  const known = LIFECYCLES.find(([value]) => value === (code || 'NONE'));
  return known ? known[1] : String(code);
}

/** The lifecycle as a badge whose text says the state. */
export function lifecycleBadge(code) {
  const known = LIFECYCLES.find(([value]) => value === (code || 'NONE'));
  return badge(lifecycleLabel(code), known ? known[2] : 'muted');
}

export async function render(context) {
  context.setTitle('People');
  const view = buildView(context.query);
  context.main.append(pageHeading('People'), view.form, view.alert, view.summary, view.results);

  let searchController = null;
  const runSearch = ({ updateUrl }) => {
    if (searchController) searchController.abort();
    searchController = new AbortController();
    const signal = AbortSignal.any([context.signal, searchController.signal]);
    const criteria = { q: view.input.value.trim(), lifecycle: view.lifecycle.value };
    if (updateUrl && !context.signal.aborted) keepInUrl(criteria);
    return search(view, criteria, signal);
  };
  const debounced = debounce(() => runSearch({ updateUrl: true }), SEARCH_DELAY_MS);
  context.signal.addEventListener('abort', () => debounced.cancel());

  view.input.addEventListener('input', debounced);
  view.lifecycle.addEventListener('change', () => {
    debounced.cancel();
    runSearch({ updateUrl: true });
  });
  view.form.addEventListener('submit', (event) => {
    event.preventDefault();
    debounced.cancel();
    runSearch({ updateUrl: true });
  });
  await runSearch({ updateUrl: false });
}

function buildView(query) {
  const input = el('input', {
    type: 'search',
    name: 'q',
    value: query.get('q') || '',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'Name, employee id or e-mail',
  });
  const lifecycle = select([['', 'Any'], ...LIFECYCLES.map(([value, label]) => [value, label])],
    query.get('lifecycle') || '');
  lifecycle.name = 'lifecycle';
  const form = el('form', { class: 'toolbar', role: 'search' },
    field('Search people', input),
    field('Lifecycle', lifecycle),
    el('div', { class: 'field field-button' }, el('button', { type: 'submit', class: 'secondary', text: 'Search' })));
  return {
    form,
    input,
    lifecycle,
    alert: alertRegion(),
    summary: el('p', { class: 'result-count', 'aria-live': 'polite' }),
    results: el('div', { class: 'results' }),
  };
}

/** Replaces (not pushes) the URL: typing should not flood the history. */
function keepInUrl(criteria) {
  window.history.replaceState(null, '', `/console/people${queryString(criteria)}`);
}

async function search(view, criteria, signal) {
  clearRegion(view.alert);
  view.results.setAttribute('aria-busy', 'true');
  view.summary.textContent = 'Searching…';
  try {
    const page = await apiGet('/persons', { ...criteria, limit: PAGE_SIZE }, { signal });
    showResults(view, criteria, page, signal);
  } catch (error) {
    if (isAbort(error)) return;
    view.summary.textContent = '';
    view.results.replaceChildren();
    showError(view.alert, error);
  } finally {
    if (!signal.aborted) view.results.removeAttribute('aria-busy');
  }
}

function showResults(view, criteria, firstPage, signal) {
  const table = dataTable({
    label: 'People',
    columns: COLUMNS,
    rows: firstPage.items,
    empty: emptyText(criteria),
  });
  let shown = firstPage.items.length;
  let cursor = firstPage.next_cursor;
  view.summary.textContent = countText(shown, cursor);
  view.results.replaceChildren(table.element);
  if (!cursor) return;
  view.results.append(loadMore(async () => {
    const next = await apiGet('/persons', { ...criteria, limit: PAGE_SIZE, cursor }, { signal });
    table.append(next.items);
    shown += next.items.length;
    cursor = next.next_cursor;
    view.summary.textContent = countText(shown, cursor);
    return Boolean(cursor);
  }, view.alert));
}

const COLUMNS = [
  { header: 'Name', cell: (p) => personLink(p.employee_id, p.name || p.employee_id) },
  { header: 'Employee id', cell: (p) => p.employee_id, className: 'mono' },
  { header: 'E-mail', cell: (p) => p.work_email },
  { header: 'Lifecycle', cell: (p) => lifecycleBadge(p.lifecycle) },
  { header: 'Apps', cell: (p) => listText(p.apps) },
];

function countText(shown, cursor) {
  if (shown === 0) return '';
  const people = shown === 1 ? '1 person' : `${shown} people`;
  return cursor ? `${people} shown; more below.` : `${people}.`;
}

/** The empty state names what was asked, e.g. No people match “xyz”. */
function emptyText({ q, lifecycle }) {
  const state = lifecycle ? lifecycleLabel(lifecycle) : '';
  if (q && state) return `No people match “${q}” with lifecycle ${state}.`;
  if (q) return `No people match “${q}”.`;
  if (state) return `No people have lifecycle ${state}.`;
  return 'No people are known yet.';
}
