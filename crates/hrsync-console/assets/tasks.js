// Tasks: what people must do by hand in apps without SCIM (manual-task
// apps): create, update, disable or reactivate a person's account. Disables
// (leavers, leaves) come first: a leaver keeps the account until one is
// done. Whoever did a task closes it here; the closing is recorded under
// their name. The filters live in the URL.

import { apiGet, apiPostJson, queryString, segment } from './api.js';
import {
  actionButton, alertRegion, badge, clearRegion, dataTable, el, field, formatDuration, isAbort,
  loadMore, loading, openDialog, pageHeading, personLink, select, showError, showStatus,
  statusRegion, timeEl, withBusy,
} from './ui.js';

const PAGE_SIZE = 50;
/** A task open longer than this is marked overdue (the alert's threshold). */
export const OVERDUE_MS = 4 * 3600 * 1000;

const STATUSES = [['open', 'Open'], ['done', 'Done'], ['superseded', 'Superseded'], ['any', 'Any']];
const ACTIONS = [['', 'Any'], ['disable', 'Disable'], ['create', 'Create'], ['update', 'Update'],
  ['reactivate', 'Reactivate']];
const ACTION_KINDS = { disable: 'bad', create: 'info', update: 'muted', reactivate: 'ok' };
const STATUS_KINDS = { open: 'warn', done: 'ok', superseded: 'muted' };

export async function render(context) {
  context.setTitle('Tasks');
  const filters = {
    status: context.query.get('status') || 'open',
    action: context.query.get('action') || '',
    app: context.query.get('app') || '',
    employee_id: context.query.get('employee_id') || '',
  };
  const view = { alert: alertRegion(), status: statusRegion(), results: el('div', {}, loading()) };
  context.main.append(pageHeading('Tasks'),
    el('p', { class: 'lede', text: 'Account changes people make by hand in apps without SCIM. Do the disables first: a leaver keeps the account until its task is closed.' }),
    filterForm(context, filters), view.alert, view.status, view.results);
  await showTasks(context, filters, view);
}

function filterForm(context, filters) {
  const status = select(STATUSES, filters.status);
  const action = select(ACTIONS, filters.action);
  const app = el('input', { type: 'text', name: 'app', value: filters.app, autocomplete: 'off' });
  const person = el('input', { type: 'text', name: 'employee_id', value: filters.employee_id, autocomplete: 'off', spellcheck: 'false' });
  const apply = el('button', { type: 'submit', class: 'primary', text: 'Apply filters' });
  const form = el('form', { class: 'filters', 'aria-label': 'Filters' },
    field('Status', status), field('Action', action), field('App', app),
    field('Person', person, 'Employee id'),
    el('div', { class: 'field field-button' }, apply));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = { status: status.value, action: action.value, app: app.value.trim(), employee_id: person.value.trim() };
    context.navigate(`/console/tasks${queryString(next)}`);
  });
  return form;
}

/** The API's parameters for `filters` (empty ones, and status "any", left out). */
function params(filters) {
  const out = { limit: PAGE_SIZE };
  for (const [key, value] of Object.entries(filters)) {
    if (value && !(key === 'status' && value === 'any')) out[key] = value;
  }
  return out;
}

async function showTasks(context, filters, view) {
  let page;
  try {
    page = await apiGet('/tasks', params(filters), { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    view.results.replaceChildren();
    showError(view.alert, error);
    return;
  }
  const reload = () => showTasks(context, filters, view);
  const table = dataTable({
    label: 'Tasks',
    rows: firstThingsFirst(page.items),
    empty: filters.status === 'open' ? 'No open tasks.' : 'No tasks match these filters.',
    columns: columns(context, view, reload),
    rowClass: (task) => (isOverdue(task) ? 'overdue' : null),
  });
  view.results.replaceChildren(table.element);
  let cursor = page.next_cursor;
  if (!cursor) return;
  view.results.append(loadMore(async () => {
    const next = await apiGet('/tasks', { ...params(filters), cursor }, { signal: context.signal });
    table.append(firstThingsFirst(next.items));
    cursor = next.next_cursor;
    return Boolean(cursor);
  }, view.alert));
}

/** Disables (the fast lane) before the rest; otherwise newest first, as listed. */
export function firstThingsFirst(tasks) {
  return [...tasks.filter((t) => t.priority), ...tasks.filter((t) => !t.priority)];
}

/** An open task waiting longer than {@link OVERDUE_MS}. */
export function isOverdue(task) {
  return task.status === 'open' && task.age_ms > OVERDUE_MS;
}

function columns(context, view, reload) {
  return [
    { header: 'Task', cell: (t) => `#${t.task_id}`, className: 'mono' },
    { header: 'Person', cell: (t) => personLink(t.employee_id), className: 'mono' },
    { header: 'App', cell: (t) => t.app },
    { header: 'Do', cell: (t) => actionBadge(t.action) },
    { header: 'Why', cell: (t) => t.reason },
    { header: 'What', cell: (t) => whatToDo(t) },
    { header: 'Open for', cell: (t) => ageCell(t), numeric: true },
    { header: 'Status', cell: (t) => statusCell(t) },
    { header: 'Action', cell: (t) => (t.status === 'open' ? closeButton(context, view, t, reload) : null) },
  ];
}

function actionBadge(action) {
  return badge(action[0].toUpperCase() + action.slice(1), ACTION_KINDS[action] || 'muted');
}

/**
 * Open tasks for a person's page (`of: 'person'`, by app) or an app's
 * (`of: 'app'`, by person): what to do, why, and how long each has waited
 * (disables first, overdue ones marked).
 */
export function openTasksTable(tasks, of) {
  const which = of === 'app'
    ? { header: 'Person', cell: (t) => personLink(t.employee_id), className: 'mono' }
    : { header: 'App', cell: (t) => t.app };
  return dataTable({
    label: `Open tasks of the ${of}`,
    rows: firstThingsFirst(tasks),
    columns: [
      { header: 'Task', cell: (t) => `#${t.task_id}`, className: 'mono' },
      which,
      { header: 'Do', cell: (t) => actionBadge(t.action) },
      { header: 'Why', cell: (t) => t.reason },
      { header: 'Open for', cell: (t) => ageCell(t), numeric: true },
    ],
    rowClass: (task) => (isOverdue(task) ? 'overdue' : null),
  }).element;
}

/**
 * A create: every field. Otherwise the changes, and every field in a
 * disclosure. Then the app's instructions.
 */
function whatToDo(task) {
  const fields = Object.entries(task.fields || {}).map(([name, value]) =>
    el('li', {}, el('span', { class: 'mono', text: name }), `: ${show(value)}`));
  const instructions = task.instructions ? el('p', { class: 'hint', text: task.instructions }) : null;
  if (task.action === 'create') return [el('ul', { class: 'compact' }, fields), instructions];
  const changes = (task.changes || []).map((c) =>
    el('li', {}, el('span', { class: 'mono', text: c.field }), `: ${show(c.from)} → ${show(c.to)}`));
  return [
    changes.length ? el('ul', { class: 'compact' }, changes) : null,
    el('details', {}, el('summary', { text: 'All fields' }), el('ul', { class: 'compact' }, fields)),
    instructions,
  ];
}

/** A field's value as text: lists joined, nothing as "(none)". */
export function show(value) {
  if (value === null || value === undefined || value === '') return '(none)';
  if (Array.isArray(value)) return value.map(show).join(', ');
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  return String(value);
}

function ageCell(task) {
  const took = formatDuration(task.age_ms);
  if (!isOverdue(task)) return took;
  return el('span', { class: 'slow' }, took, ' ', el('strong', { class: 'slow-word', text: 'overdue' }));
}

function statusCell(task) {
  const parts = [badge(task.status[0].toUpperCase() + task.status.slice(1), STATUS_KINDS[task.status] || 'muted')];
  if (task.status === 'done') {
    parts.push(el('div', { class: 'hint' }, `by ${task.closed_by} `, timeEl(task.closed_at)));
    if (task.note) parts.push(el('div', { class: 'hint', text: `“${task.note}”` }));
  }
  if (task.status === 'superseded') {
    parts.push(el('div', { class: 'hint', text: task.superseded_by ? `by task #${task.superseded_by}` : 'no longer needed' }));
  }
  return parts;
}

function closeButton(context, view, task, reload) {
  return actionButton(context.session, 'Mark done',
    (button) => closeTask(context, view, task, button, reload), { kind: 'secondary' }).element;
}

/** Asks for an optional note, then closes the task under the user's name. */
function closeTask(context, view, task, button, reload) {
  const note = el('textarea', { name: 'note', rows: 3, maxlength: 2000 });
  const done = el('button', { type: 'button', class: 'primary', text: 'Mark done' });
  const cancel = el('button', { type: 'button', class: 'secondary', text: 'Cancel' });
  const dialog = openDialog({
    title: `Task #${task.task_id}: ${task.action} ${task.employee_id}'s account in ${task.app}`,
    body: [
      el('p', { text: `Close it only once it is done in ${task.app}. This is recorded under your name.` }),
      field('Note (optional)', note, 'What was done, for whoever reads the task later'),
    ],
    buttons: [done, cancel],
  });
  cancel.addEventListener('click', () => dialog.close('cancel'));
  done.addEventListener('click', async () => {
    clearRegion(view.alert);
    clearRegion(view.status);
    try {
      await withBusy(done, () => apiPostJson(`/tasks/${segment(String(task.task_id))}/close`,
        { note: note.value.trim() || null }, { signal: context.signal }));
      dialog.close('done');
      showStatus(view.status, el('p', { text: `Task #${task.task_id} closed.` }));
      await reload();
    } catch (error) {
      dialog.close('failed');
      showError(view.alert, error);
    }
  });
  note.focus();
  return button;
}
