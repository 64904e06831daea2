// One app: health, last errors, reconcile runs; for admins "Release guard"
// (confirmed) and "Reconcile" (a dry run first, then "Fix"). A manual-task
// app: its open tasks.

import { apiGet, apiPostJson, segment } from './api.js';
import { healthBadges, pendingText } from './apps.js';
import { personLogLink } from './log.js';
import { openTasksTable } from './tasks.js';
import {
  actionButton, alertRegion, clearRegion, confirmDialog, dataTable, definitionList, el,
  emptyState, formatDuration, hasTraces, isAbort, loading, openDialog, outcomeBadge, pageHeading,
  section, showError, showStatus, statusRegion, timeEl, toDate, traceLink, withBusy,
} from './ui.js';

/** Reconciliation classes in report order, with their names for people. */
const CLASSES = [
  ['in_sync', 'In sync'],
  ['drifted', 'Drifted'],
  ['unlinked_match', 'Unlinked match'],
  ['missing', 'Missing'],
  ['orphan', 'Orphan'],
  ['unknown', 'Unknown'],
];

/** What a finding's action would do (dry run) or did (fix). */
const ACTIONS = {
  none: ['nothing to do', 'nothing to do'],
  link: ['would link', 'linked'],
  create: ['would create', 'created'],
  reapply: ['would re-apply', 're-applied'],
  deactivate: ['would deactivate', 'deactivated'],
  memberships: ['would fix memberships', 'memberships fixed'],
  report: ['reported only', 'reported only'],
};

/** A fix's result other than done, for people. */
const RESULTS = {
  held: 'held by the deprovision guard',
  parked: 'parked (app not answering)',
  skipped: 'skipped (changed meanwhile)',
  failed: 'failed',
};

export async function render(context) {
  const name = context.params[0];
  context.setTitle(name);
  const view = {
    name,
    actions: el('div', { class: 'page-actions' }),
    status: statusRegion(),
    alert: alertRegion(),
    body: el('div', { class: 'stack' }, loading()),
  };
  context.main.append(el('div', { class: 'page-head' }, pageHeading(name), view.actions),
    view.status, view.alert, view.body);
  await loadApp(context, view);
}

/**
 * A manual-task app (no SCIM): hrsync keeps no health of its own for it;
 * its accounts are changed by hand, so the page lists its open tasks.
 */
async function loadManualApp(context, view) {
  let page;
  try {
    page = await apiGet('/tasks', { app: view.name, status: 'open', limit: 50 }, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    view.body.replaceChildren();
    showError(view.alert, error);
    return;
  }
  const all = `/console/tasks?app=${encodeURIComponent(view.name)}&status=any`;
  view.body.replaceChildren(
    el('p', { class: 'lede' }, 'An app without SCIM: people change its accounts by hand, through its tasks. ',
      el('a', { href: all, text: 'All of its tasks' })),
    section('Open tasks', page.items.length
      ? openTasksTable(page.items, 'app')
      : emptyState('No open tasks: every account is as asked.')));
}

async function loadApp(context, view) {
  let app;
  try {
    app = await apiGet(`/apps/${segment(view.name)}`, {}, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    if (error.status === 404 && error.problem && error.problem.manual_app) {
      await loadManualApp(context, view);
      return;
    }
    view.body.replaceChildren();
    showError(view.alert, error);
    return;
  }
  const reload = () => loadApp(context, view);
  view.actions.replaceChildren(...actionButtons(context, view, app, reload));
  view.body.replaceChildren(
    healthSection(app),
    lastErrorsSection(app, context.session),
    reconcileRunsSection(app));
}

// ------------------------------------------------------------ sections --

function healthSection(app) {
  const guard = app.guard_tripped
    ? el('span', {}, 'Tripped at ', timeEl(app.guard_tripped_at)) : 'Not tripped';
  return section('Health', el('p', {}, healthBadges(app)), definitionList([
    ['Deprovision guard', guard],
    ['Held by the guard', String(app.held_by_guard)],
    ['Parked (app not answering)', String(app.parked)],
    ['Waiting for a retry', `${app.waiting_retry} changes of ${app.persons_waiting_retry} persons`],
    ['Pending', pendingText(app)],
    ['Active accounts', String(app.active_accounts)],
    ['Failed accounts', String(app.failed_accounts)],
    ['Operations (last hour)', String(app.operations_last_hour)],
    ['Errors (last hour)', String(app.errors_last_hour)],
  ]));
}

function lastErrorsSection(app, session) {
  const columns = [
    { header: 'Time', cell: (e) => timeEl(e.at) },
    { header: 'Person', cell: (e) => personLogLink(e.person_id, e.employee_id), className: 'mono' },
    { header: 'Operation', cell: (e) => e.operation, className: 'mono' },
    { header: 'Outcome', cell: (e) => outcomeBadge(e.outcome) },
    { header: 'HTTP', cell: (e) => e.http_status, numeric: true },
    { header: 'Attempt', cell: (e) => e.attempt, numeric: true },
    { header: 'Error', cell: (e) => e.error, className: 'error-text' },
  ];
  if (hasTraces(session)) columns.push({ header: 'Trace', cell: (e) => traceLink(session, e.trace_id) });
  const table = dataTable({
    label: 'Last errors',
    rows: app.last_errors || [],
    empty: 'No errors recorded.',
    columns,
  });
  return section('Last errors', table.element);
}

function reconcileRunsSection(app) {
  const table = dataTable({
    label: 'Reconcile runs',
    rows: app.reconcile_runs || [],
    empty: 'No reconciliation has run yet.',
    columns: [
      { header: 'Mode', cell: (r) => (r.mode === 'fix' ? 'Fix' : 'Dry run (report)') },
      { header: 'Started', cell: (r) => timeEl(r.started_at) },
      { header: 'Finished', cell: (r) => timeEl(r.finished_at) },
      { header: 'Took', cell: (r) => runDuration(r), numeric: true },
      { header: 'Accounts per class', cell: (r) => countsText(r.counts) },
      { header: 'Failures', cell: (r) => r.failures, numeric: true },
    ],
  });
  return section('Reconcile runs', table.element);
}

function runDuration(run) {
  const started = toDate(run.started_at);
  const finished = toDate(run.finished_at);
  return started && finished ? formatDuration(finished - started) : null;
}

/** "in sync 118, drifted 2, missing 1" from a class → count object. */
export function countsText(counts) {
  if (!counts || typeof counts !== 'object') return null;
  const known = CLASSES.filter(([key]) => key in counts);
  const other = Object.keys(counts).filter((key) => !CLASSES.some(([k]) => k === key));
  const parts = [
    ...known.map(([key, label]) => `${label.toLowerCase()} ${counts[key]}`),
    ...other.map((key) => `${key.replaceAll('_', ' ')} ${counts[key]}`),
  ];
  return parts.length ? parts.join(', ') : null;
}

// ------------------------------------------------------------- actions --

function actionButtons(context, view, app, reload) {
  const holdsSomething = app.guard_tripped || app.held_by_guard > 0;
  const release = actionButton(context.session, 'Release guard',
    (button) => releaseGuard(context, view, app, button, reload),
    { disabledReason: holdsSomething ? null : 'the guard is not tripped and holds nothing', kind: 'secondary' });
  const reconcile = actionButton(context.session, 'Reconcile',
    () => openReconcile(context, view, reload), { kind: 'secondary' });
  return [release.element, reconcile.element];
}

async function releaseGuard(context, view, app, button, reload) {
  const held = app.held_by_guard === 1 ? '1 held deactivation' : `${app.held_by_guard} held deactivations`;
  const confirmed = await confirmDialog({
    title: `Release the guard of ${view.name}?`,
    message: [
      `The deprovision guard is untripped and the ${held} it holds are applied now.`,
      'This is recorded as an admin action under your name.',
    ],
  });
  if (!confirmed) return;
  clearRegion(view.status);
  clearRegion(view.alert);
  try {
    const result = await withBusy(button, () =>
      apiPostJson(`/apps/${segment(view.name)}/guard/release`, undefined, { signal: context.signal }));
    showStatus(view.status, releaseSummary(result));
    await reload();
  } catch (error) {
    showError(view.alert, error);
  }
}

function releaseSummary(result) {
  const released = result.released || [];
  const failed = released.filter((r) => !r.ok);
  const applied = released.length - failed.length;
  const line = `Guard released: ${applied} of ${released.length} held change${released.length === 1 ? '' : 's'} applied` +
    (failed.length ? `; ${failed.length} failed and stay held.` : '.');
  if (!failed.length) return el('p', { text: line });
  return [el('p', { text: line }), el('ul', {}, failed.map((r) =>
    el('li', { text: `${r.app} ${r.person_id}: ${r.error || 'unknown error'}` })))];
}

/**
 * The reconcile dialog: a dry run at once (it changes nothing), its
 * classification, then "Fix" runs it for real. While the fix runs the
 * dialog cannot be dismissed, as leaving would not stop it on the server.
 */
function openReconcile(context, view, reload) {
  const alert = alertRegion();
  const results = el('div', { class: 'dialog-results', 'aria-live': 'polite' },
    loading('Working… a dry run is classifying every account; nothing is changed.'));
  const fix = el('button', { type: 'button', class: 'primary', text: 'Fix', disabled: true });
  const cancel = el('button', { type: 'button', class: 'secondary', text: 'Cancel' });
  const controller = new AbortController();
  const signal = AbortSignal.any([context.signal, controller.signal]);
  let fixing = false;
  const dialog = openDialog({
    title: `Reconcile ${view.name}`,
    body: [alert, results],
    buttons: [fix, cancel],
    onClose: () => controller.abort(),
  });
  dialog.addEventListener('cancel', (event) => { if (fixing) event.preventDefault(); });
  cancel.addEventListener('click', () => dialog.close('cancel'));
  cancel.focus();
  fix.addEventListener('click', async () => {
    fixing = true;
    cancel.disabled = true;
    clearRegion(alert);
    const progress = el('p', { class: 'loading', text: 'Starting…' });
    results.replaceChildren(progress);
    const stop = watchProgress(view.name, progress, signal);
    try {
      const report = await withBusy(fix, () => reconcile(view.name, false, signal));
      stop();
      fixing = false;
      dialog.close('fixed');
      showStatus(view.status, reportSummary(report));
      await reload();
    } catch (error) {
      stop();
      fixing = false;
      cancel.disabled = false;
      showError(alert, error);
    }
  });
  runDryRun(view.name, signal, { alert, results, fix });
}

/**
 * Shows in `line` how far the app's running reconciliation is, read every
 * half second until the returned function is called (or `signal` aborts).
 * A failed read is skipped: the run's own answer reports what went wrong.
 */
function watchProgress(name, line, signal) {
  let stopped = false;
  (async () => {
    while (!stopped && !signal.aborted) {
      try {
        const progress = await apiGet(`/apps/${segment(name)}/reconcile/progress`, {}, { signal });
        if (!stopped && progress.running) line.textContent = progressText(progress);
      } catch (error) {
        if (isAbort(error)) return;
      }
      await new Promise((resolve) => { setTimeout(resolve, 500); });
    }
  })();
  return () => { stopped = true; };
}

/** A running reconciliation's phase and counts, in words. */
export function progressText(progress) {
  switch (progress.phase) {
    case 'reading':
      return 'Reading the app\'s accounts…';
    case 'classifying':
      return `Classifying ${progress.accounts_read} accounts…`;
    case 'fixing': {
      const failed = progress.failed ? ` (${progress.failed} failed)` : '';
      return `Fixing: ${progress.fixed + progress.failed} of ${progress.to_fix} done${failed}…`;
    }
    case 'memberships':
      return 'Fixing group memberships…';
    default:
      return 'Recording the run…';
  }
}

async function runDryRun(name, signal, { alert, results, fix }) {
  try {
    const report = await reconcile(name, true, signal);
    results.replaceChildren(reportSummary(report), classTable(report));
    fix.disabled = false;
  } catch (error) {
    results.replaceChildren();
    showError(alert, error);
  }
}

function reconcile(name, dryRun, signal) {
  return apiPostJson(`/apps/${segment(name)}/reconcile`, { dry_run: dryRun }, { signal });
}

function reportSummary(report) {
  const persons = typeof report.persons === 'number' ? `, ${report.persons} persons known` : '';
  const what = report.dry_run ? 'Dry run' : 'Reconciled';
  const outcome = report.dry_run ? 'Nothing was changed.' : fixOutcome(report);
  return el('p', { text: `${what} ${report.app}: ${report.accounts_read} accounts read${persons}; ` +
    `${countsText(report.counts) || 'no accounts classified'}. ${outcome}` });
}

function fixOutcome(report) {
  const failed = (report.findings || []).filter((f) => f.result && f.result.status === 'failed').length;
  return failed ? `${failed} fix(es) failed; the next reconciliation tries them again.` : 'Every fix was applied.';
}

/** Per class: the count and what was (or would be) done, how often. */
function classTable(report) {
  const findings = report.findings || [];
  const rows = CLASSES.map(([key, label]) => {
    const ofClass = findings.filter((f) => f.class === key);
    const count = report.counts && key in report.counts ? report.counts[key] : ofClass.length;
    return { label, count, actions: tally(ofClass.map((f) => findingOutcome(f, report.dry_run))) };
  });
  return dataTable({
    label: 'Accounts per class',
    rows,
    columns: [
      { header: 'Class', cell: (r) => r.label },
      { header: 'Accounts', cell: (r) => String(r.count), numeric: true },
      { header: report.dry_run ? 'Would do' : 'Done', cell: (r) => r.actions },
    ],
  }).element;
}

function findingOutcome(finding, dryRun) {
  const [would, done] = ACTIONS[finding.action] || [finding.action, finding.action];
  if (dryRun) return would;
  const status = finding.result && finding.result.status;
  return status && status !== 'done' ? RESULTS[status] || status : done;
}

/** "would link 3, nothing to do 40", in first-seen order. */
function tally(outcomes) {
  const counts = new Map();
  for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) || 0) + 1);
  return counts.size ? [...counts].map(([o, n]) => `${o} ${n}`).join(', ') : null;
}
