// Imports: the snapshot import history, and a dry run of an HR export
// against a source's baseline (what an import would publish; nothing is
// published or stored).

import { apiGet, apiPostBody, segment } from './api.js';
import {
  alertRegion, badge, clearRegion, dataTable, el, field, isAbort, loadMore, loading,
  pageHeading, personLink, section, select, showError, showStatus, statusRegion, timeEl,
  withBusy,
} from './ui.js';

const PAGE_SIZE = 50;

/** The dry run's summary counts, in the order people read them. */
const SUMMARY_LABELS = [
  ['workers', 'Workers in the file'],
  ['active_before', 'Active before'],
  ['hires', 'Hires'],
  ['moves', 'Moves'],
  ['terminations', 'Terminations'],
  ['dropped', 'Dropped (absent from the file)'],
  ['rehires', 'Rehires'],
  ['leaves_started', 'Leaves started'],
  ['leaves_ended', 'Leaves ended'],
  ['priority', 'On the priority lane'],
];

/** The dry run's event kinds, for headings. */
const KIND_LABELS = {
  hire: 'Hires',
  move: 'Moves',
  terminate: 'Terminations',
  rehire: 'Rehires',
  leave_started: 'Leaves started',
  leave_ended: 'Leaves ended',
};

const STATES = {
  publishing: ['Publishing', 'warn'],
  baseline: ['Baseline', 'ok'],
  accepted: ['Accepted', 'muted'],
};

export async function render(context) {
  context.setTitle('Imports');
  const dryRun = el('div', {}, loading());
  const history = el('div', {}, loading());
  context.main.append(pageHeading('Imports'), dryRun, history);
  const alert = alertRegion();
  let page = null;
  try {
    page = await apiGet('/imports', { limit: PAGE_SIZE }, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    showError(alert, error);
  }
  // Without the history the dry run still works, with a typed source.
  dryRun.replaceChildren(dryRunSection(context, page ? sourcesOf(page.items) : []));
  history.replaceChildren(page ? historySection(context, page, alert) : section('History', alert));
}

function sourcesOf(imports) {
  return [...new Set(imports.map((i) => i.source))].sort();
}

// ----------------------------------------------------------- history --

function historySection(context, firstPage, alert) {
  const table = dataTable({
    label: 'Imports',
    rows: firstPage.items,
    empty: 'No imports yet.',
    columns: [
      { header: 'Source', cell: (i) => i.source },
      { header: 'State', cell: (i) => stateBadge(i.state) },
      { header: 'Events', cell: (i) => String(i.event_count), numeric: true },
      { header: 'Created', cell: (i) => timeEl(i.created_at) },
      { header: 'Accepted', cell: (i) => timeEl(i.accepted_at) },
      { header: 'File digest', cell: (i) => digest(i.file_digest), className: 'mono' },
    ],
  });
  const content = [alert, table.element];
  let cursor = firstPage.next_cursor;
  if (cursor) {
    content.push(loadMore(async () => {
      const next = await apiGet('/imports', { limit: PAGE_SIZE, cursor }, { signal: context.signal });
      table.append(next.items);
      cursor = next.next_cursor;
      return Boolean(cursor);
    }, alert));
  }
  return section('History', ...content);
}

function stateBadge(state) {
  const [label, kind] = STATES[state] || [state, 'muted'];
  return badge(label, kind);
}

/** A digest shortened for the table; the whole one in the tooltip. */
function digest(value) {
  if (!value) return null;
  const short = value.length > 20 ? `${value.slice(0, 20)}…` : value;
  return el('span', { title: value, text: short });
}

// ----------------------------------------------------------- dry run --

function dryRunSection(context, sources) {
  const source = sources.length
    ? select(sources.map((s) => [s, s]), sources[0])
    : el('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  source.name = 'source';
  const file = el('input', { type: 'file', name: 'file', accept: '.csv,.jsonl,.ndjson,text/csv,application/x-ndjson' });
  const submit = el('button', { type: 'submit', class: 'primary', text: 'Dry run' });
  const status = statusRegion();
  const alert = alertRegion();
  const result = el('div', { class: 'dry-run-result' });
  const form = el('form', { class: 'toolbar', 'aria-label': 'Dry run of an import' },
    field('Source', source, sources.length ? null : 'As in [[ingest.sources]]'),
    field('Snapshot file', file, 'CSV or JSON Lines'),
    el('div', { class: 'field field-button' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearRegion(alert);
    clearRegion(status);
    const chosen = { source: source.value.trim(), file: file.files[0] };
    const problem = !chosen.source ? 'Choose a source.' : !chosen.file ? 'Choose a snapshot file.' : null;
    if (problem) {
      showError(alert, new Error(problem));
      return;
    }
    try {
      const plan = await withBusy(submit, () => apiPostBody(
        `/imports/${segment(chosen.source)}/dry-run`, chosen.file, contentTypeOf(chosen.file),
        { signal: context.signal }));
      showStatus(status, `Dry run of ${plan.source} done: nothing was published or stored.`);
      result.replaceChildren(...planView(plan));
    } catch (error) {
      result.replaceChildren();
      showError(alert, error);
    }
  });
  return section('Dry run', el('p', { class: 'lede', text: 'Compare an HR export with the source’s baseline: the events an import would publish.' }),
    form, status, alert, result);
}

/** The upload's content type: by extension first, as browsers often give none for .jsonl. */
export function contentTypeOf(file) {
  const name = (file.name || '').toLowerCase();
  if (name.endsWith('.jsonl') || name.endsWith('.ndjson')) return 'application/x-ndjson';
  if (name.endsWith('.csv')) return 'text/csv';
  if (file.type === 'application/x-ndjson' || file.type === 'text/csv') return file.type;
  return 'text/csv';
}

function planView(plan) {
  const parts = [refusals(plan.refused_without_force || []), summaryTable(plan.summary || {})];
  for (const [kind, events] of Object.entries(plan.events || {})) {
    if (events.length) parts.push(kindSection(kind, events));
  }
  if (plan.events_truncated) {
    parts.push(el('p', { class: 'hint', text: 'Some kinds have more events than are listed; the summary counts them all.' }));
  }
  return parts;
}

function refusals(reasons) {
  if (!reasons.length) return el('p', { text: 'Within the import limits: a real import would not be refused.' });
  return el('div', { class: 'warning' },
    el('p', {}, el('strong', { text: 'A real import would be refused without --force:' })),
    el('ul', {}, reasons.map((reason) => el('li', { text: reason }))));
}

function summaryTable(summary) {
  const known = SUMMARY_LABELS.filter(([key]) => key in summary);
  const other = Object.keys(summary).filter((key) => !SUMMARY_LABELS.some(([k]) => k === key));
  const rows = [...known, ...other.map((key) => [key, key.replaceAll('_', ' ')])]
    .map(([key, label]) => ({ label, count: summary[key] }));
  return el('div', { class: 'subsection' }, el('h3', { text: 'Summary' }), dataTable({
    label: 'Summary',
    rows,
    empty: 'The file holds no workers.',
    columns: [
      { header: 'Type', cell: (r) => r.label },
      { header: 'Count', cell: (r) => String(r.count), numeric: true },
    ],
  }).element);
}

/**
 * The workers of one kind. A hire is not known to hrsync yet, so only the
 * others link to a person page. Names show when the API sends them.
 */
function kindSection(kind, events) {
  const label = KIND_LABELS[kind] || kind;
  const columns = [
    { header: 'Employee id', cell: (e) => (kind === 'hire' ? e.employee_id : personLink(e.employee_id)), className: 'mono' },
  ];
  if (events.some((e) => e.name)) columns.push({ header: 'Name', cell: (e) => e.name });
  columns.push(
    { header: 'Effective', cell: (e) => timeEl(e.effective_at) },
    { header: 'Priority lane', cell: (e) => (e.priority ? 'Yes' : 'No') });
  return el('div', { class: 'subsection' },
    el('h3', { text: `${label} (${events.length})` }),
    dataTable({ label: `${label}: workers`, rows: events, columns }).element);
}
