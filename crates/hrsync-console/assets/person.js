// One person: profile, lifecycle, groups and apps with *why* (the rule and
// the values it read), each app's account and its last operations, their
// open tasks in apps without SCIM, the timeline; and, for admins,
// "Provision now".

import { apiGet, apiPostJson, segment } from './api.js';
import { lifecycleBadge, lifecycleLabel } from './people.js';
import { openTasksTable } from './tasks.js';
import {
  actionButton, alertRegion, appLink, badge, clearRegion, dataTable, definitionList, el,
  emptyState, formatDuration, hasTraces, isAbort, listText, loading, outcomeBadge,
  pageHeading, section, showError, showStatus, statusRegion, timeEl, toDate, traceLink,
  withBusy,
} from './ui.js';

/** Names of the upcoming transitions, for people. */
const TRANSITIONS = {
  start: 'Start (pre-hire becomes active)',
  leave_start: 'Leave starts',
  leave_end: 'Leave ends',
  termination: 'Termination',
};

export async function render(context) {
  const employeeId = context.params[0];
  context.setTitle(employeeId);
  const view = {
    heading: pageHeading(employeeId),
    subtitle: el('p', { class: 'subtitle' }),
    status: statusRegion(),
    alert: alertRegion(),
    body: el('div', { class: 'stack' }, loading()),
  };
  const load = () => loadPerson(context, employeeId, view);
  const provision = actionButton(context.session, 'Provision now', (button) =>
    provisionNow(context, employeeId, view, button, load));
  context.main.append(
    el('div', { class: 'page-head' }, view.heading, el('div', { class: 'page-actions' }, provision.element)),
    view.subtitle, view.status, view.alert, view.body);
  await load();
}

async function loadPerson(context, employeeId, view) {
  let person;
  try {
    person = await apiGet(`/persons/${segment(employeeId)}`, {}, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    view.body.replaceChildren();
    showError(view.alert, error);
    return;
  }
  const name = personName(person);
  view.heading.textContent = name;
  context.setTitle(name);
  view.subtitle.replaceChildren(
    el('span', { text: 'Employee id ' }), el('span', { class: 'mono', text: person.employee_id }),
    el('span', { class: 'sep', 'aria-hidden': 'true', text: ' · ' }),
    el('span', { text: 'hrsync id ' }), el('span', { class: 'mono', text: person.person_id }),
    el('span', { class: 'sep', 'aria-hidden': 'true', text: ' · ' }),
    lifecycleBadge(person.lifecycle));
  const tasks = await openTasks(context, person);
  if (context.signal.aborted) return;
  view.body.replaceChildren(...[
    profileSection(person),
    lifecycleSection(person),
    groupsSection(person),
    appsSection(person, context.session, tasks.items || []),
    tasksSection(person, tasks),
    timelineSection(person, context.session)].filter(Boolean));
}

/** The person's open tasks in apps without SCIM: `{ items }` or `{ error }`. */
async function openTasks(context, person) {
  if (!(person.manual_accounts || []).length) return { items: [] };
  try {
    const page = await apiGet('/tasks', { employee_id: person.employee_id, status: 'open', limit: 50 },
      { signal: context.signal });
    return { items: page.items };
  } catch (error) {
    return { error };
  }
}

/**
 * The person's open tasks, if they have any: a leaver keeps such an
 * account until its disable task is closed.
 */
function tasksSection(person, tasks) {
  if (tasks.error) {
    if (isAbort(tasks.error)) return null;
    return section('Open tasks', el('p', { class: 'error-text', text: `The tasks could not be read: ${tasks.error.message}` }));
  }
  if (!tasks.items.length) return null;
  const all = `/console/tasks?employee_id=${encodeURIComponent(person.employee_id)}&status=any`;
  return section('Open tasks',
    el('p', { class: 'hint' }, 'Account changes someone must make by hand in apps without SCIM. ',
      el('a', { href: all, text: 'All of their tasks' })),
    openTasksTable(tasks.items, 'person'));
}

/** Given and family name from the attributes, else the employee id. */
export function personName(person) {
  const value = (name) => {
    const attribute = (person.attributes || []).find((a) => a.name === name);
    return attribute ? attribute.value.trim() : '';
  };
  const full = [value('given_name'), value('family_name')].filter(Boolean).join(' ');
  return full || person.employee_id;
}

// ---------------------------------------------------------- provision --

async function provisionNow(context, employeeId, view, button, reload) {
  clearRegion(view.status);
  clearRegion(view.alert);
  try {
    const result = await withBusy(button, () =>
      apiPostJson(`/persons/${segment(employeeId)}/provision`, undefined, { signal: context.signal }));
    showStatus(view.status, provisionSummary(result));
    await reload();
  } catch (error) {
    showError(view.alert, error);
  }
}

function provisionSummary(result) {
  const heading = el('p', {
    text: `Provisioned version ${result.version} (${lifecycleLabel(result.lifecycle)}).`,
  });
  if (!result.apps || !result.apps.length) return [heading, el('p', { text: 'No app to provision.' })];
  const items = result.apps.map((applied) => {
    const did = applied.operations && applied.operations.length
      ? applied.operations.join('; ') : 'nothing to change';
    const outcome = applied.ok ? `done: ${did}` : `failed: ${applied.error || 'unknown error'}`;
    return el('li', { text: `${applied.app}: ${outcome}` });
  });
  return [heading, el('ul', {}, items)];
}

// ------------------------------------------------------------ profile --

function profileSection(person) {
  const table = dataTable({
    label: 'Profile',
    rows: person.attributes || [],
    empty: 'No attributes recorded.',
    columns: [
      { header: 'Attribute', cell: (a) => a.name, className: 'mono' },
      { header: 'Value', cell: (a) => a.value },
      { header: 'Source', cell: (a) => a.source },
    ],
  });
  return section('Profile', table.element);
}

// ---------------------------------------------------------- lifecycle --

function lifecycleSection(person) {
  const facts = [
    ['State', lifecycleBadge(person.lifecycle)],
    ['Last emitted state', person.emitted_lifecycle ? lifecycleLabel(person.emitted_lifecycle) : null],
    ['Employed from', timeEl(person.employed_from)],
  ];
  if (person.terminates_at) {
    facts.push(['Terminates at', timeEl(person.terminates_at)]);
    facts.push(['Immediate termination', person.terminate_immediate ? 'Yes' : 'No']);
  }
  facts.push(['HR time zone', person.time_zone]);
  const upcoming = dataTable({
    label: 'Upcoming transitions',
    rows: person.upcoming || [],
    empty: 'No upcoming transitions.',
    columns: [
      { header: 'Transition', cell: (u) => TRANSITIONS[u.transition] || u.transition },
      { header: 'At', cell: (u) => timeEl(u.at) },
      { header: 'In', cell: (u) => timeUntil(u.at) },
    ],
  });
  return section('Lifecycle', definitionList(facts), el('h3', { text: 'Upcoming transitions' }), upcoming.element);
}

function timeUntil(value) {
  const date = toDate(value);
  if (!date) return null;
  const ms = date.getTime() - Date.now();
  return ms > 0 ? `in ${formatDuration(ms)}` : 'due now';
}

// ------------------------------------------------------------- groups --

/** The groups the person is in, each with its rule and the values it read. */
function groupsSection(person) {
  if (!person.why) {
    return section('Groups',
      emptyState('The rules in force could not explain this person’s groups.'),
      el('p', { text: `Groups as last emitted: ${listText(person.groups)}.` }));
  }
  const members = person.why.groups.filter((g) => g.member);
  const table = dataTable({
    label: 'Groups',
    rows: members,
    empty: 'Not a member of any group.',
    columns: [
      { header: 'Group', cell: (g) => el('strong', { text: g.group }) },
      { header: 'Rule', cell: (g) => el('code', { class: 'rule', text: g.rule }) },
      { header: 'Values read', cell: ruleInputs },
      { header: 'Grants apps', cell: (g) => listText(g.apps) },
    ],
  });
  return section('Groups', table.element);
}

function ruleInputs(group) {
  const lines = (group.inputs || []).map((input) =>
    el('li', {}, el('code', { text: `${input.name} = ${valueText(input.value)}` })));
  if (group.error) lines.push(el('li', { class: 'error-text', text: `Rule failed: ${group.error}` }));
  if (!lines.length) return 'Reads no attributes';
  return el('ul', { class: 'plain' }, lines);
}

/** A rule input's value as the rule sees it: strings quoted, lists as JSON. */
export function valueText(value) {
  if (value === undefined) return 'null';
  return JSON.stringify(value);
}

// --------------------------------------------------------------- apps --

function appsSection(person, session, openTasks) {
  const rows = appRows(person);
  const table = dataTable({
    label: 'Apps of the person',
    rows,
    empty: 'No apps are assigned and no account exists.',
    columns: [
      { header: 'App', cell: (r) => appLink(r.app) },
      { header: 'Why', cell: (r) => whyApp(r.explanation) },
      { header: 'Account', cell: (r) => (r.manual ? manualBadge(r.manual, openTasks) : accountBadge(r.account)) },
      { header: 'Status', cell: (r) => (r.manual ? badge('By hand', 'info') : accountStatus(r.account)) },
      { header: 'SCIM id', cell: (r) => r.account && r.account.scim_id, className: 'mono' },
      { header: 'Last error', cell: (r) => r.account && r.account.last_error, className: 'error-text' },
      { header: 'Updated', cell: (r) => r.account && timeEl(r.account.updated_at) },
    ],
  });
  const operations = rows.filter((r) => r.account).map((r) => lastOperations(r.account, session));
  return section('Apps', table.element, operations);
}

/** Every app the person is assigned or has an account in, assigned first. */
function appRows(person) {
  const explanations = person.why ? person.why.apps : [];
  const accounts = person.accounts || [];
  const manual = person.manual_accounts || [];
  const names = [
    ...explanations.filter((a) => a.assigned).map((a) => a.app),
    ...(person.apps || []),
    ...accounts.map((a) => a.app),
    ...manual.map((a) => a.app),
  ];
  return [...new Set(names)].map((app) => ({
    app,
    explanation: explanations.find((a) => a.app === app) || null,
    account: accounts.find((a) => a.app === app) || null,
    manual: manual.find((a) => a.app === app) || null,
  }));
}

/**
 * An account in an app without SCIM: what its open task asks, else what
 * was last asked of people (and done).
 */
function manualBadge(account, openTasks) {
  const task = openTasks.find((t) => t.app === account.app);
  if (task) return badge(`${task.action[0].toUpperCase()}${task.action.slice(1)} task open`, 'warn');
  if (!account.asked) return badge('No account', 'muted');
  return account.active ? badge('Active', 'ok') : badge('Disabled', 'muted');
}

function whyApp(explanation) {
  if (!explanation) return 'No group grants it now';
  const parts = [];
  if (explanation.granted_by.length) parts.push(`Granted by ${explanation.granted_by.join(', ')}`);
  else parts.push('Not granted by any of the person’s groups');
  if (explanation.prehire_window_opens_ms !== null && explanation.prehire_window_opens_ms !== undefined) {
    parts.push(el('br'), 'Pre-hire window opens ', timeEl(explanation.prehire_window_opens_ms));
  }
  return el('span', {}, parts);
}

function accountBadge(account) {
  if (!account || !account.scim_id) return badge('No account', 'muted');
  return account.active ? badge('Active', 'ok') : badge('Inactive', 'muted');
}

function accountStatus(account) {
  if (!account) return null;
  return account.status === 'failed' ? badge('Failed', 'bad') : badge('OK', 'ok');
}

function lastOperations(account, session) {
  const columns = [
    { header: 'Time', cell: (o) => timeEl(o.at) },
    { header: 'Operation', cell: (o) => o.operation, className: 'mono' },
    { header: 'Outcome', cell: (o) => outcomeBadge(o.outcome) },
    { header: 'HTTP', cell: (o) => o.http_status, numeric: true },
    { header: 'Latency', cell: (o) => formatDuration(o.latency_ms), numeric: true },
    { header: 'Error', cell: (o) => o.error, className: 'error-text' },
  ];
  if (hasTraces(session)) columns.push({ header: 'Trace', cell: (o) => traceLink(session, o.trace_id) });
  const table = dataTable({
    label: `Last operations in ${account.app}`,
    rows: account.last_operations || [],
    empty: 'No operations recorded.',
    columns,
  });
  return el('div', { class: 'subsection' },
    el('h3', { text: `Last operations in ${account.app}` }), table.element);
}

// ----------------------------------------------------------- timeline --

function timelineSection(person, session) {
  const columns = [
    { header: 'Kind', cell: (e) => e.kind, className: 'mono' },
    { header: 'Source', cell: (e) => e.source },
    { header: 'Effective', cell: (e) => timeEl(e.effective_at) },
    { header: 'Occurred', cell: (e) => timeEl(e.occurred_at) },
    { header: 'Recorded', cell: (e) => timeEl(e.recorded_at) },
  ];
  if (hasTraces(session)) columns.push({ header: 'Trace', cell: (e) => traceLink(session, e.trace_id) });
  const table = dataTable({
    label: 'Timeline',
    rows: newestFirst(person.events || []),
    empty: 'No events recorded.',
    columns,
  });
  return section('Timeline', table.element);
}

/** Events newest first by when they were recorded (the API's order too). */
function newestFirst(events) {
  const when = (e) => (toDate(e.recorded_at) || toDate(e.occurred_at) || new Date(0)).getTime();
  return [...events].sort((a, b) => when(b) - when(a));
}
