// Provisioning log: the SCIM operations hrsync made, newest first, filtered
// by person, app, operation, outcome and time. The filters live in the URL
// (times as RFC 3339 instants), so a filtered view can be shared and
// "back" returns to the previous filter.

import { apiGet, queryString } from './api.js';
import {
  alertRegion, appendChildren, appLink, dataTable, el, field, formatDuration, fromLocalInputValue,
  hasTraces, isAbort, loadMore, loading, outcomeBadge, pageHeading, personPath, select,
  showError, timeEl, toLocalInputValue, traceLink,
} from './ui.js';

const PAGE_SIZE = 50;

const OPERATIONS = ['MATCH', 'CREATE', 'LINK', 'UPDATE', 'DEACTIVATE', 'REACTIVATE',
  'GROUP_CREATE', 'GROUP_UPDATE', 'GROUP_MEMBERS', 'GUARD_HOLD', 'GUARD_RELEASE'];
const OUTCOMES = [['SUCCESS', 'Success'], ['RETRY', 'Retry'], ['FAILED', 'Failed'],
  ['SKIPPED', 'Skipped'], ['HELD', 'Held'], ['TASK', 'Task (manual app)']];

/** The audit parameters the page reads from (and writes to) its URL. */
const FILTER_KEYS = ['person', 'person_id', 'app', 'operation', 'outcome', 'from', 'to'];

export async function render(context) {
  context.setTitle('Provisioning log');
  const filters = readFilters(context.query);
  const alert = alertRegion();
  const results = el('div', {}, loading());
  const form = filterForm(context, filters);
  const scope = filters.person_id
    ? el('p', { class: 'hint', text: `Only the person with hrsync id ${filters.person_id}.` }) : null;
  appendChildren(context.main, [pageHeading('Provisioning log'), form, scope, alert, results]);
  fillAppChoices(context, form);
  await showLog(context, filters, { alert, results });
}

function readFilters(query) {
  const filters = {};
  for (const key of FILTER_KEYS) filters[key] = query.get(key) || '';
  return filters;
}

function hasAnyFilter(filters) {
  return FILTER_KEYS.some((key) => filters[key]);
}

// -------------------------------------------------------------- form --

function filterForm(context, filters) {
  const controls = {
    person: el('input', { type: 'text', name: 'person', value: filters.person, autocomplete: 'off', spellcheck: 'false' }),
    app: el('input', { type: 'text', name: 'app', value: filters.app, list: 'log-apps', autocomplete: 'off' }),
    operation: select([['', 'Any'], ...OPERATIONS.map((o) => [o, o])], filters.operation),
    outcome: select([['', 'Any'], ...OUTCOMES], filters.outcome),
    from: el('input', { type: 'datetime-local', name: 'from', value: toLocalInputValue(filters.from) }),
    to: el('input', { type: 'datetime-local', name: 'to', value: toLocalInputValue(filters.to) }),
  };
  const apply = el('button', { type: 'submit', class: 'primary', text: 'Apply filters' });
  const clear = el('button', { type: 'button', class: 'secondary', text: 'Clear filters' });
  const form = el('form', { class: 'filters', 'aria-label': 'Filters' },
    field('Person', controls.person, 'Employee id'),
    field('App', controls.app),
    field('Operation', controls.operation),
    field('Outcome', controls.outcome),
    field('From', controls.from, 'Your time zone'),
    field('To', controls.to, 'Your time zone'),
    el('datalist', { id: 'log-apps' }),
    el('div', { class: 'field field-button' }, el('div', { class: 'button-row' }, apply, clear)));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    // person_id comes only from links; a filter applied from the form replaces it.
    const next = {
      person: controls.person.value.trim(),
      app: controls.app.value.trim(),
      operation: controls.operation.value,
      outcome: controls.outcome.value,
      from: fromLocalInputValue(controls.from.value),
      to: fromLocalInputValue(controls.to.value),
    };
    context.navigate(`/console/log${queryString(next)}`);
  });
  clear.addEventListener('click', () => context.navigate('/console/log'));
  return form;
}

/** Offers the configured apps as suggestions; the field works without them. */
async function fillAppChoices(context, form) {
  try {
    const apps = await apiGet('/apps', {}, { signal: context.signal });
    const list = form.querySelector('datalist');
    list.replaceChildren(...apps.map((app) => el('option', { value: app.name })));
  } catch {
    // Suggestions only: the log itself reports errors that matter.
  }
}

// ------------------------------------------------------------- table --

async function showLog(context, filters, { alert, results }) {
  const params = { ...filters, limit: PAGE_SIZE };
  let page;
  try {
    page = await apiGet('/audit', params, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    results.replaceChildren();
    showError(alert, error);
    return;
  }
  const table = dataTable({
    label: 'Provisioning log',
    rows: page.items,
    empty: hasAnyFilter(filters) ? 'No operations match these filters.' : 'No operations recorded yet.',
    columns: columns(context.session),
  });
  results.replaceChildren(table.element);
  let cursor = page.next_cursor;
  if (!cursor) return;
  results.append(loadMore(async () => {
    const next = await apiGet('/audit', { ...params, cursor }, { signal: context.signal });
    table.append(next.items);
    cursor = next.next_cursor;
    return Boolean(cursor);
  }, alert));
}

/**
 * The audit names a person by hrsync id, and by employee id where a change
 * of theirs is stored: the employee id links to the person's page, the
 * hrsync id filters the log to them.
 */
export function personLogLink(personId, employeeId) {
  if (!personId) return null;
  const filter = el('a', {
    href: `/console/log${queryString({ person_id: personId })}`,
    title: 'Show this person’s operations',
    text: employeeId ? 'operations' : personId,
  });
  if (!employeeId) return filter;
  return el('span', {}, [
    el('a', { href: personPath(employeeId), title: 'Open the person', text: employeeId }),
    ' (', filter, ')',
  ]);
}

function columns(session) {
  const list = [
    { header: 'Time', cell: (r) => timeEl(r.at) },
    { header: 'Person', cell: (r) => personLogLink(r.person_id, r.employee_id), className: 'mono' },
    { header: 'App', cell: (r) => appLink(r.app) },
    { header: 'Operation', cell: (r) => r.operation, className: 'mono' },
    { header: 'Outcome', cell: (r) => outcomeBadge(r.outcome) },
    { header: 'HTTP', cell: (r) => r.http_status, numeric: true },
    { header: 'Latency', cell: (r) => formatDuration(r.latency_ms), numeric: true },
    { header: 'Attempt', cell: (r) => r.attempt, numeric: true },
    { header: 'SCIM id', cell: (r) => r.scim_id, className: 'mono' },
    { header: 'Error', cell: (r) => r.error, className: 'error-text' },
  ];
  if (hasTraces(session)) list.push({ header: 'Trace', cell: (r) => traceLink(session, r.trace_id) });
  return list;
}
