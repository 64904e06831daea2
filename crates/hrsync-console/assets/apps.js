// Apps: each configured app's health, and above it the provisioner's dead
// letters with, for admins, "Redrive DLQ"; below, the apps without SCIM
// with their open tasks.

import { apiGet, apiPostJson } from './api.js';
import {
  actionButton, alertRegion, appendChildren, appLink, badge, clearRegion, confirmDialog, dataTable, el,
  formatDuration, isAbort, loading, pageHeading, section, showError, showStatus,
  statusRegion, timeEl, withBusy,
} from './ui.js';

const DLQ_LIMIT = 20;

export async function render(context) {
  context.setTitle('Apps');
  const dlq = el('div', {}, loading());
  const list = el('div', {}, loading());
  const manual = el('div', {});
  context.main.append(pageHeading('Apps'), dlq, list, manual);
  await Promise.all([renderDeadLetters(context, dlq), renderApps(context, list),
    renderManualApps(context, manual)]);
}

// ---------------------------------------------------- apps without SCIM --

const TASK_ACTIONS = ['disable', 'create', 'update', 'reactivate'];

/** The manual-task apps, if any: their open tasks, disables first. */
async function renderManualApps(context, container) {
  let apps;
  try {
    apps = await apiGet('/manual-apps', {}, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    const alert = alertRegion();
    container.replaceChildren(alert);
    showError(alert, error);
    return;
  }
  if (!apps.length) return;
  const table = dataTable({
    label: 'Apps without SCIM',
    rows: apps,
    columns: [
      { header: 'App', cell: (a) => appLink(a.name) },
      { header: 'Open tasks', cell: openTasksText },
      { header: 'Oldest open disable', cell: (a) => (a.oldest_disable_age_ms === null ? 'None' : badge(formatDuration(a.oldest_disable_age_ms), 'bad')) },
      { header: 'Oldest open task', cell: (a) => (a.oldest_open_at ? timeEl(a.oldest_open_at) : 'None') },
    ],
  });
  container.replaceChildren(section('Apps without SCIM',
    el('p', { class: 'hint', text: 'People change their accounts by hand, through tasks.' }), table.element));
}

function openTasksText(app) {
  const parts = TASK_ACTIONS.filter((a) => app.open[a] > 0).map((a) => `${app.open[a]} ${a}`);
  return parts.length ? parts.join(', ') : 'None';
}

// ------------------------------------------------------------ health --

/**
 * An app's health as badges whose words carry the meaning: "Guard
 * tripped", "Quarantined" (changes parked while it does not answer),
 * "Retrying" (some persons' changes ran out of attempts and wait for the
 * next probe), else "Healthy".
 */
export function healthBadges(app) {
  const badges = [];
  if (app.guard_tripped) badges.push(badge('Guard tripped', 'bad'));
  if (app.quarantined) badges.push(badge('Quarantined', 'warn'));
  if (app.persons_waiting_retry > 0) badges.push(badge('Retrying', 'warn'));
  if (!badges.length) badges.push(badge('Healthy', 'ok'));
  return el('span', { class: 'badges' }, badges);
}

/**
 * What waits to be applied: parked changes, changes waiting for a retry and
 * deactivations the guard holds.
 */
export function pendingText(app) {
  const parts = [];
  if (typeof app.lag_ms === 'number') parts.push(`lag ${formatDuration(app.lag_ms)}`);
  if (app.parked > 0) parts.push(`${app.parked} parked`);
  if (app.waiting_retry > 0) {
    const persons = app.persons_waiting_retry === 1 ? '1 person' : `${app.persons_waiting_retry} persons`;
    parts.push(`${app.waiting_retry} waiting for a retry (${persons})`);
  }
  if (app.held_by_guard > 0) parts.push(`${app.held_by_guard} held by the guard`);
  return parts.length ? parts.join(', ') : 'None';
}

async function renderApps(context, container) {
  const alert = alertRegion();
  let apps;
  try {
    apps = await apiGet('/apps', {}, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    container.replaceChildren(alert);
    showError(alert, error);
    return;
  }
  const table = dataTable({
    label: 'Apps',
    rows: apps,
    empty: 'No apps are configured.',
    columns: [
      { header: 'App', cell: (a) => appLink(a.name) },
      { header: 'Health', cell: healthBadges },
      { header: 'Pending', cell: pendingText },
      { header: 'Accounts', cell: accountsText },
      { header: 'Errors (last hour)', cell: errorsText, numeric: true },
      { header: 'Last error', cell: lastError },
    ],
  });
  container.replaceChildren(section('Health', table.element));
}

function accountsText(app) {
  const failed = app.failed_accounts > 0 ? `, ${app.failed_accounts} failed` : '';
  return `${app.active_accounts} active${failed}`;
}

function errorsText(app) {
  return `${app.errors_last_hour} of ${app.operations_last_hour}`;
}

function lastError(app) {
  const last = app.last_errors && app.last_errors[0];
  if (!last) return 'None';
  return el('span', {}, timeEl(last.at), el('br'),
    el('span', { class: 'error-text', text: last.error || `${last.operation} ${last.outcome}` }));
}

// ------------------------------------------------------- dead letters --

async function renderDeadLetters(context, container) {
  const alert = alertRegion();
  const status = statusRegion();
  const content = el('div', {}, loading());
  const redrive = actionButton(context.session, 'Redrive DLQ', (button) =>
    redriveDeadLetters(context, { alert, status, content }, button));
  container.replaceChildren(section('Dead letters',
    el('div', { class: 'panel-actions' }, redrive.element), status, alert, content));
  await loadDeadLetters(context, { alert, content });
}

async function loadDeadLetters(context, { alert, content }) {
  let page;
  try {
    page = await apiGet('/dlq/provisioner', { limit: DLQ_LIMIT }, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    content.replaceChildren();
    showError(alert, error);
    return;
  }
  const table = dataTable({
    label: 'Dead letters',
    rows: page.items,
    empty: 'No dead letters are pending.',
    columns: [
      { header: 'Key', cell: (d) => d.key, className: 'mono' },
      { header: 'Error', cell: (d) => d.error, className: 'error-text' },
      { header: 'Failed at', cell: (d) => timeEl(d.failed_at) },
    ],
  });
  const shown = page.items.length < page.pending
    ? el('p', { class: 'hint', text: `The first ${page.items.length} are listed.` }) : null;
  content.replaceChildren();
  appendChildren(content, [pendingSummary(page), table.element, shown]);
}

function pendingSummary(page) {
  const pending = page.pending === 1 ? '1 dead letter pending' : `${page.pending} dead letters pending`;
  return el('p', { class: 'summary-line' },
    el('strong', { class: 'count', text: pending }),
    ` (${page.stored} stored on ${page.topic}).`);
}

async function redriveDeadLetters(context, regions, button) {
  const confirmed = await confirmDialog({
    title: 'Redrive the dead letters?',
    message: [
      'Every change the provisioner parked is applied again, once. One that fails again is parked anew.',
      'This is recorded as an admin action under your name.',
    ],
  });
  if (!confirmed) return;
  clearRegion(regions.status);
  clearRegion(regions.alert);
  try {
    const result = await withBusy(button, () =>
      apiPostJson('/dlq/provisioner/redrive', undefined, { signal: context.signal }));
    showStatus(regions.status,
      `Redrive done: ${result.replayed} replayed, ${result.pending} still pending.`);
    await loadDeadLetters(context, regions);
  } catch (error) {
    showError(regions.alert, error);
  }
}
