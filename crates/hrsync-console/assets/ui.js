// Shared building blocks for the console's pages: DOM construction, time
// and duration formatting, tables, dialogs and the alert/status regions.
//
// Everything the API returns is untrusted, so nodes are built with
// createElement and text goes in through textContent; nothing here parses
// HTML.

let nextId = 0;

/** A document-unique id for aria-labelledby / aria-describedby pairs. */
export function uniqueId(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * Creates an element. `props` keys: `class`, `text` (textContent),
 * `dataset`, `on<event>` (a listener, never an inline handler, as the
 * Content-Security-Policy forbids those) and any attribute; `true` sets a
 * boolean attribute, `false`, `null` and `undefined` skip it.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? '' : String(value));
  }
  appendChildren(node, children);
  return node;
}

/** Appends strings (as text), nodes and nested arrays; skips null/false. */
export function appendChildren(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

// ---------------------------------------------------------------- time --

// One formatter for every time shown: the browser's zone, with its
// abbreviation, so that "14:03 CET" is never mistaken for UTC.
const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  timeZoneName: 'short',
});

/** Parses an RFC 3339 string or epoch milliseconds; null when neither. */
export function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** A time in the browser's zone, "—" when absent. */
export function formatTime(value) {
  if (value === null || value === undefined || value === '') return '—';
  const date = toDate(value);
  return date ? timeFormat.format(date) : String(value);
}

/** A <time> element: the local rendering, the exact instant in `title`. */
export function timeEl(value) {
  const date = toDate(value);
  if (!date) return document.createTextNode(formatTime(value));
  const iso = date.toISOString();
  return el('time', { datetime: iso, title: iso, text: timeFormat.format(date) });
}

/** A duration for people: "850 ms", "1.2 s", "3 min", "2 h 5 min", "3 d 4 h". */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return '—';
  const value = Math.max(0, Number(ms));
  if (value < 1000) return `${Math.round(value)} ms`;
  const seconds = value / 1000;
  if (seconds < 59.95) return `${seconds.toFixed(1)} s`;
  const minutes = seconds / 60;
  if (minutes < 9.95) return `${Number(minutes.toFixed(1))} min`;
  // Round once, then split, so that 23 h 59.6 min reads "1 d", not "23 h 60 min".
  const totalMinutes = Math.round(minutes);
  if (totalMinutes < 60) return `${totalMinutes} min`;
  if (totalMinutes < 24 * 60) return joinUnits(Math.floor(totalMinutes / 60), 'h', totalMinutes % 60, 'min');
  const totalHours = Math.round(totalMinutes / 60);
  return joinUnits(Math.floor(totalHours / 24), 'd', totalHours % 24, 'h');
}

function joinUnits(major, majorUnit, minor, minorUnit) {
  return minor > 0 ? `${major} ${majorUnit} ${minor} ${minorUnit}` : `${major} ${majorUnit}`;
}

/** The value a datetime-local input shows for an instant, in the local zone. */
export function toLocalInputValue(value) {
  const date = toDate(value);
  if (!date) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** The RFC 3339 instant of a datetime-local input's value (read as local time). */
export function fromLocalInputValue(value) {
  if (!value) return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

// ---------------------------------------------------------- structure --

/** The page's h1; focusable so that navigation can move focus to it. */
export function pageHeading(text) {
  return el('h1', { tabindex: '-1', text });
}

/** A section with an h2 that names it (for landmarks and tests alike). */
export function section(title, ...children) {
  const headingId = uniqueId('section');
  return el('section', { class: 'panel', 'aria-labelledby': headingId },
    el('h2', { id: headingId, text: title }), ...children);
}

/** A description list from [term, value] pairs; values may be nodes. */
export function definitionList(pairs) {
  const list = el('dl', { class: 'facts' });
  for (const [term, value] of pairs) {
    list.append(el('div', { class: 'fact' }, el('dt', { text: term }), el('dd', {}, orDash(value))));
  }
  return list;
}

/** The value, or an em dash for nothing. */
export function orDash(value) {
  if (value === null || value === undefined || value === '') return '—';
  return value;
}

/** A paragraph for an empty list: says plainly that there is nothing. */
export function emptyState(text) {
  return el('p', { class: 'empty', text });
}

/** A loading note, replaced once the data is in. */
export function loading(text = 'Loading…') {
  return el('p', { class: 'loading', text });
}

/**
 * A status badge. The text carries the meaning; the kind (ok, warn, bad,
 * info, muted) only adds colour.
 */
export function badge(text, kind = 'muted') {
  return el('span', { class: `badge badge-${kind}`, text });
}

/** "SUCCESS" → "Success", "GROUP_MEMBERS" → "Group members". */
export function humanize(code) {
  if (!code) return '';
  const words = String(code).replaceAll('_', ' ').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A list of names as text: "a, b, c", or `none` when empty. */
export function listText(items, none = 'None') {
  return items && items.length ? items.join(', ') : none;
}

// ------------------------------------------------------------- links --

/** The console path of a person's page. */
export function personPath(employeeId) {
  return `/console/people/${encodeURIComponent(employeeId)}`;
}

/** The console path of an app's page. */
export function appPath(app) {
  return `/console/apps/${encodeURIComponent(app)}`;
}

export function personLink(employeeId, text = employeeId) {
  return el('a', { href: personPath(employeeId), text });
}

export function appLink(app) {
  return el('a', { href: appPath(app), text: app });
}

/**
 * The tracing backend's link for a trace id, or null when the session has
 * no trace_url or the record no trace. Only http(s) URLs are linked, so a
 * misconfigured template cannot become a script URL.
 */
export function traceLink(session, traceId) {
  if (!session || !session.trace_url || !traceId) return null;
  const href = session.trace_url.replaceAll('{trace_id}', encodeURIComponent(traceId));
  let url;
  try {
    url = new URL(href, window.location.origin);
  } catch {
    return null;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  return el('a', {
    href: url.href,
    target: '_blank',
    rel: 'noopener',
    text: 'Trace',
    title: `Trace ${traceId} (opens in a new tab)`,
  });
}

/** Whether the session can show trace links at all (decides the column). */
export function hasTraces(session) {
  return Boolean(session && session.trace_url);
}

// ------------------------------------------------------------ tables --

/**
 * A table of `rows`. `label` names it (a caption, visually hidden unless
 * `showCaption`); each column is { header, cell(row) → node|string|null,
 * className?, numeric? }. With no rows, the `empty` text stands in its
 * place. Returns { element, append(rows) } for "Load more".
 */
export function dataTable({ label, columns, rows, empty, showCaption = false, rowClass }) {
  const wrapper = el('div', { class: 'table-wrap' });
  if (!rows.length && empty) {
    wrapper.append(emptyState(empty));
    return { element: wrapper, append: (more) => replaceEmpty(wrapper, { label, columns, rowClass, showCaption }, more) };
  }
  const { table, tbody } = buildTable({ label, columns, showCaption });
  appendRows(tbody, columns, rows, rowClass);
  wrapper.append(table);
  return { element: wrapper, append: (more) => appendRows(tbody, columns, more, rowClass) };
}

function buildTable({ label, columns, showCaption }) {
  const caption = el('caption', { class: showCaption ? '' : 'visually-hidden', text: label });
  const headRow = el('tr', {}, columns.map((column) =>
    el('th', { scope: 'col', class: column.numeric ? 'num' : null, text: column.header })));
  const tbody = el('tbody');
  const table = el('table', { class: 'data' }, caption, el('thead', {}, headRow), tbody);
  return { table, tbody };
}

function replaceEmpty(wrapper, spec, rows) {
  if (!rows.length) return;
  const { table, tbody } = buildTable(spec);
  appendRows(tbody, spec.columns, rows, spec.rowClass);
  wrapper.replaceChildren(table);
}

function appendRows(tbody, columns, rows, rowClass) {
  for (const row of rows) {
    const tr = el('tr', { class: rowClass ? rowClass(row) : null });
    for (const column of columns) tr.append(tableCell(column, row));
    tbody.append(tr);
  }
}

function tableCell(column, row) {
  const content = column.cell(row);
  const isEmpty = content === null || content === undefined || content === '';
  // An empty cell shows a neutral dash, not one styled as its column (red for errors).
  const classes = [column.numeric ? 'num' : '', isEmpty ? 'no-value' : column.className || '']
    .join(' ').trim();
  return el('td', { class: classes || null }, orDash(content));
}

/**
 * A "Load more" button. `fetchNext` appends the next page and resolves to
 * whether another follows; after the last the button goes. A failure shows
 * in `alert` and leaves the button, to try again.
 */
export function loadMore(fetchNext, alert) {
  const button = el('button', { type: 'button', class: 'secondary', text: 'Load more' });
  const wrapper = el('div', { class: 'load-more' }, button);
  button.addEventListener('click', async () => {
    clearRegion(alert);
    try {
      const more = await withBusy(button, fetchNext, 'Loading…');
      if (!more) wrapper.remove();
    } catch (error) {
      showError(alert, error);
    }
  });
  return wrapper;
}

// ---------------------------------------------------------- messages --

/**
 * An element with role="alert" for errors. Empty, it is not displayed (and
 * so not announced nor found by role queries).
 */
export function alertRegion() {
  return el('div', { class: 'alert', role: 'alert' });
}

/** An element with role="status" for the outcome of an action. */
export function statusRegion() {
  return el('div', { class: 'status', role: 'status' });
}

/** Shows an error's detail in an alert region; aborted requests say nothing. */
export function showError(region, error) {
  if (isAbort(error)) return;
  const lines = [el('p', { text: error && error.message ? error.message : String(error) })];
  const where = error && error.problem && error.problem.path;
  if (where) lines.push(el('p', { class: 'alert-where', text: `Where: ${where}` }));
  region.replaceChildren(...lines);
}

/** Shows a message (text or nodes) in a status region. */
export function showStatus(region, ...content) {
  region.replaceChildren();
  appendChildren(region, content);
}

export function clearRegion(region) {
  region.replaceChildren();
}

/** Whether an error is an aborted fetch (a page left before it answered). */
export function isAbort(error) {
  return Boolean(error) && error.name === 'AbortError';
}

// ----------------------------------------------------------- actions --

/**
 * Disables `button` and labels it "Working…" while `work` runs, then
 * restores it. Returns what `work` returned.
 */
export async function withBusy(button, work, busyText = 'Working…') {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = busyText;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.textContent = label;
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

/**
 * An action button. Viewers see it too, disabled, with "needs the admin
 * role" beside it (and as its description), so nothing is hidden from them
 * and the reason is plain. `disabledReason` disables it for admins as well.
 */
export function actionButton(session, label, onClick, { disabledReason = null, kind = 'primary' } = {}) {
  const button = el('button', { type: 'button', class: kind, text: label });
  const wrapper = el('span', { class: 'action' }, button);
  const reason = session && session.can_act ? disabledReason : 'needs the admin role';
  if (reason) {
    const noteId = uniqueId('why-disabled');
    button.disabled = true;
    button.setAttribute('aria-describedby', noteId);
    wrapper.append(el('span', { id: noteId, class: 'action-note', text: reason }));
  } else {
    button.addEventListener('click', () => onClick(button));
  }
  return { element: wrapper, button };
}

// ----------------------------------------------------------- dialogs --

/**
 * A modal <dialog> with a title, body nodes and buttons; removed from the
 * document once closed. Returns the dialog (already open).
 */
export function openDialog({ title, body = [], buttons = [], onClose }) {
  const headingId = uniqueId('dialog');
  const actions = el('div', { class: 'dialog-actions' }, buttons);
  const dialog = el('dialog', { class: 'dialog', 'aria-labelledby': headingId },
    el('h2', { id: headingId, text: title }), el('div', { class: 'dialog-body' }, body), actions);
  // The focus goes back where it was (the button that opened the dialog)
  // however the dialog closes, Escape included.
  const opener = document.activeElement;
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
    if (onClose) onClose(dialog.returnValue);
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/**
 * Asks to confirm an action: "Confirm" and "Cancel" (which has the initial
 * focus, so Enter alone does not act). Resolves to true on "Confirm".
 */
export function confirmDialog({ title, message, confirmLabel = 'Confirm' }) {
  return new Promise((resolve) => {
    const confirm = el('button', { type: 'button', class: 'primary', text: confirmLabel });
    const cancel = el('button', { type: 'button', class: 'secondary', text: 'Cancel' });
    const paragraphs = [].concat(message).map((text) => el('p', { text }));
    const dialog = openDialog({
      title,
      body: paragraphs,
      buttons: [confirm, cancel],
      onClose: (value) => resolve(value === 'confirm'),
    });
    confirm.addEventListener('click', () => dialog.close('confirm'));
    cancel.addEventListener('click', () => dialog.close('cancel'));
    cancel.focus();
  });
}

// -------------------------------------------------------------- misc --

/** Calls `fn` once `ms` have passed without another call. */
export function debounce(fn, ms) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/** A labelled form field: <label for> and the control, in one wrapper. */
export function field(labelText, control, hint) {
  if (!control.id) control.id = uniqueId('field');
  const label = el('label', { for: control.id, text: labelText });
  const parts = [label, control];
  if (hint) {
    const hintId = uniqueId('hint');
    control.setAttribute('aria-describedby', hintId);
    parts.push(el('span', { id: hintId, class: 'hint', text: hint }));
  }
  return el('div', { class: 'field' }, parts);
}

/** A <select> with [value, label] options, `selected` preselected. */
export function select(options, selected = '') {
  const node = el('select');
  for (const [value, label] of options) {
    node.append(el('option', { value, text: label, selected: value === selected }));
  }
  return node;
}

// ---------------------------------------------------- domain badges --

// SCIM operation outcomes (the audit's `outcome`) and how loud to show them.
const OUTCOME_KINDS = { SUCCESS: 'ok', RETRY: 'warn', FAILED: 'bad', SKIPPED: 'muted', HELD: 'warn', TASK: 'info' };

/** An audit outcome as a badge: "Success", "Failed", ... */
export function outcomeBadge(outcome) {
  return badge(humanize(outcome), OUTCOME_KINDS[outcome] || 'muted');
}
