// Hooks: what each hook endpoint, SSF receiver and app revocation call was
// owed, and what became of it (delivered, still pending, or dead after its
// attempts). Dead deliveries are sent again with "Redrive", in order. The
// filters live in the URL.

import { ApiError, apiGet, apiPostJson, queryString } from './api.js';
import {
  actionButton, alertRegion, badge, clearRegion, confirmDialog, dataTable, el, emptyState, field,
  humanize, isAbort, loadMore, loading, pageHeading, personLink, select, showError, showStatus,
  statusRegion, timeEl, withBusy,
} from './ui.js';

const PAGE_SIZE = 50;
const STATUSES = [['', 'Any'], ['dead', 'Dead'], ['pending', 'Pending'], ['delivered', 'Delivered']];
const STATUS_KINDS = { delivered: 'ok', pending: 'warn', dead: 'bad' };

export async function render(context) {
  context.setTitle('Hooks');
  const filters = {
    hook: context.query.get('hook') || '',
    status: context.query.get('status') || '',
    employee_id: context.query.get('employee_id') || '',
  };
  const view = {
    alert: alertRegion(),
    status: statusRegion(),
    actions: el('div', { class: 'button-row' }),
    results: el('div', {}, loading()),
  };
  context.main.append(pageHeading('Hooks'),
    el('p', { class: 'lede', text: 'Deliveries to hook endpoints, SSF receivers (session-revoked) and apps’ revocation calls. Dead ones ran out of attempts; redrive them once the endpoint answers again.' }),
    filterForm(context, filters), view.actions, view.alert, view.status, view.results);
  await showDeliveries(context, filters, view);
}

function filterForm(context, filters) {
  const hook = el('input', { type: 'text', name: 'hook', value: filters.hook, autocomplete: 'off' });
  const status = select(STATUSES, filters.status);
  const person = el('input', { type: 'text', name: 'employee_id', value: filters.employee_id, autocomplete: 'off', spellcheck: 'false' });
  const apply = el('button', { type: 'submit', class: 'primary', text: 'Apply filters' });
  const form = el('form', { class: 'filters', 'aria-label': 'Filters' },
    field('Hook', hook), field('Status', status), field('Person', person, 'Employee id'),
    el('div', { class: 'field field-button' }, apply));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = { hook: hook.value.trim(), status: status.value, employee_id: person.value.trim() };
    context.navigate(`/console/hooks${queryString(next)}`);
  });
  return form;
}

async function showDeliveries(context, filters, view) {
  const params = { ...filters, limit: PAGE_SIZE };
  let page;
  try {
    page = await apiGet('/hooks/deliveries', params, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    view.results.replaceChildren();
    if (error instanceof ApiError && error.status === 404) {
      view.results.append(emptyState('Hooks are not configured ([hooks] in hrsync’s config).'));
      return;
    }
    showError(view.alert, error);
    return;
  }
  const reload = () => showDeliveries(context, filters, view);
  view.actions.replaceChildren(redriveButton(context, view, filters, reload));
  const table = dataTable({
    label: 'Deliveries',
    rows: page.items,
    empty: 'No deliveries match these filters.',
    columns: COLUMNS,
  });
  view.results.replaceChildren(table.element);
  let cursor = page.next_cursor;
  if (!cursor) return;
  view.results.append(loadMore(async () => {
    const next = await apiGet('/hooks/deliveries', { ...params, cursor }, { signal: context.signal });
    table.append(next.items);
    cursor = next.next_cursor;
    return Boolean(cursor);
  }, view.alert));
}

const COLUMNS = [
  { header: 'Created', cell: (d) => timeEl(d.created_at) },
  { header: 'Hook', cell: (d) => d.hook },
  { header: 'Person', cell: (d) => personLink(d.employee_id), className: 'mono' },
  { header: 'Event', cell: (d) => d.event_type, className: 'mono' },
  { header: 'Lane', cell: (d) => (d.priority ? badge('Fast lane', 'info') : 'main') },
  { header: 'Status', cell: (d) => badge(humanize(d.status), STATUS_KINDS[d.status] || 'muted') },
  { header: 'Attempts', cell: (d) => d.attempts, numeric: true },
  { header: 'HTTP', cell: (d) => d.http_status, numeric: true },
  { header: 'Last error', cell: (d) => d.last_error, className: 'error-text' },
  { header: 'Done', cell: (d) => timeEl(d.done_at) },
];

function redriveButton(context, view, filters, reload) {
  const label = filters.hook ? `Redrive ${filters.hook}` : 'Redrive dead deliveries';
  return actionButton(context.session, label, async (button) => {
    const confirmed = await confirmDialog({
      title: filters.hook ? `Redrive ${filters.hook}'s dead deliveries?` : 'Redrive every dead delivery?',
      message: ['They are sent again, in order per person, with their attempts counted afresh.',
        'This is recorded as an admin action under your name.'],
    });
    if (!confirmed) return;
    clearRegion(view.alert);
    clearRegion(view.status);
    try {
      const done = await withBusy(button, () =>
        apiPostJson('/hooks/redrive', { hook: filters.hook || null }, { signal: context.signal }));
      showStatus(view.status, el('p', { text: `${done.revived} dead deliver${done.revived === 1 ? 'y is' : 'ies are'} pending again.` }));
      await reload();
    } catch (error) {
      showError(view.alert, error);
    }
  }, { kind: 'secondary' }).element;
}
