// Terminations: the latest ones and, per app, how long the deactivation
// took. A slow or missing deactivation is what an auditor looks for, so it
// is marked in words ("slow") as well as by colour.

import { apiGet } from './api.js';
import {
  alertRegion, badge, el, emptyState, formatDuration, hasTraces, humanize, isAbort,
  loadMore, loading, pageHeading, personLink, showError, timeEl, traceLink,
} from './ui.js';

const PAGE_SIZE = 50;

/** Deactivation slower than this is flagged. */
export const SLOW_MS = 60_000;

/** Badge kinds of a termination's per-app status. */
const STATUS_KINDS = {
  deactivated: 'ok',
  inactive: 'muted',
  pending: 'warn',
  held: 'warn',
  parked: 'warn',
  failed: 'bad',
  task_open: 'warn',
};

export async function render(context) {
  context.setTitle('Terminations');
  const alert = alertRegion();
  const content = el('div', {}, loading());
  context.main.append(pageHeading('Terminations'),
    el('p', { class: 'lede', text: `Per app: when the account was deactivated and how long after the HR termination. Over ${formatDuration(SLOW_MS)}, or not deactivated, is marked slow.` }),
    alert, content);
  let page;
  try {
    page = await apiGet('/terminations', { limit: PAGE_SIZE }, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    content.replaceChildren();
    showError(alert, error);
    return;
  }
  showTerminations(context, content, alert, page);
}

function showTerminations(context, content, alert, firstPage) {
  if (!firstPage.items.length) {
    content.replaceChildren(emptyState('No terminations yet.'));
    return;
  }
  const withTrace = hasTraces(context.session);
  const table = terminationsTable(withTrace);
  appendTerminations(table, firstPage.items, context.session, withTrace);
  content.replaceChildren(el('div', { class: 'table-wrap' }, table));
  let cursor = firstPage.next_cursor;
  if (!cursor) return;
  content.append(loadMore(async () => {
    const next = await apiGet('/terminations', { limit: PAGE_SIZE, cursor }, { signal: context.signal });
    appendTerminations(table, next.items, context.session, withTrace);
    cursor = next.next_cursor;
    return Boolean(cursor);
  }, alert));
}

function terminationsTable(withTrace) {
  const headers = ['Employee', 'Terminated at', 'App', 'Status', 'Deactivated at', 'Latency'];
  if (withTrace) headers.push('Trace');
  return el('table', { class: 'data grouped' },
    el('caption', { class: 'visually-hidden', text: 'Terminations' }),
    el('thead', {}, el('tr', {}, headers.map((h) =>
      el('th', { scope: 'col', class: h === 'Latency' ? 'num' : null, text: h })))));
}

/**
 * One <tbody> per termination: a row per app, the employee and the time
 * spanning them, so that a person's apps read as one group.
 */
function appendTerminations(table, terminations, session, withTrace) {
  for (const termination of terminations) {
    const apps = termination.apps || [];
    const span = Math.max(apps.length, 1);
    const head = [
      el('th', { scope: 'rowgroup', rowspan: span }, personLink(termination.employee_id)),
      el('td', { rowspan: span }, timeEl(termination.terminated_at), el('div', {}, completeness(termination))),
    ];
    const body = el('tbody');
    if (!apps.length) {
      const rest = withTrace ? 5 : 4;
      body.append(el('tr', {}, head, el('td', { colspan: rest, class: 'muted', text: 'No account in any app.' })));
    }
    apps.forEach((app, index) => {
      const cells = appCells(app, session, withTrace);
      body.append(el('tr', {}, index === 0 ? head : null, cells));
    });
    table.append(body);
  }
}

/** Complete once every app, SCIM or manual, is done with. */
function completeness(termination) {
  return termination.complete ? badge('Complete', 'ok') : badge('Incomplete', 'warn');
}

function appCells(app, session, withTrace) {
  const cells = [
    el('td', { text: app.app }),
    el('td', {}, statusCell(app)),
    el('td', {}, timeEl(app.deactivated_at)),
    latencyCell(app),
  ];
  if (withTrace) cells.push(el('td', {}, traceLink(session, app.trace_id) || '—'));
  return cells;
}

function statusCell(app) {
  const parts = [badge(humanize(app.status), STATUS_KINDS[app.status] || 'muted')];
  if (app.task_id) {
    parts.push(el('div', {}, el('a', { href: '/console/tasks?action=disable', text: `task #${app.task_id}` })));
  }
  if (app.error) parts.push(el('div', { class: 'error-text', text: app.error }));
  return parts;
}

/** Whether an app's deactivation is late: over a minute, or not done. */
export function isSlow(app) {
  if (app.status !== 'deactivated') return true;
  return typeof app.latency_ms === 'number' && app.latency_ms > SLOW_MS;
}

function latencyCell(app) {
  const took = app.status === 'deactivated' ? formatDuration(app.latency_ms) : 'not deactivated';
  if (!isSlow(app)) return el('td', { class: 'num', text: took });
  return el('td', { class: 'num slow' }, took, ' ', el('strong', { class: 'slow-word', text: 'slow' }));
}
