// Rules: the group rules in force, and a preview of a changed rule set:
// who would gain or lose which groups and apps. Nothing is applied.

import { apiGet, apiPostJson } from './api.js';
import {
  alertRegion, clearRegion, dataTable, el, field, isAbort, listText, loading, pageHeading,
  personLink, section, showError, withBusy,
} from './ui.js';

export async function render(context) {
  context.setTitle('Rules');
  const alert = alertRegion();
  const current = el('div', {}, loading());
  const preview = el('div');
  context.main.append(pageHeading('Rules'), alert, current, preview);
  let rules = null;
  try {
    rules = await apiGet('/rules', {}, { signal: context.signal });
  } catch (error) {
    if (isAbort(error)) return;
    showError(alert, error);
  }
  current.replaceChildren(rules ? rulesSection(rules) : '');
  preview.replaceChildren(previewSection(context, rules || { groups: [] }));
}

function rulesSection(rules) {
  const table = dataTable({
    label: 'Rules',
    rows: rules.groups || [],
    empty: 'No group rules are configured.',
    columns: [
      { header: 'Group', cell: (g) => el('strong', { text: g.name }) },
      { header: 'Rule', cell: (g) => el('code', { class: 'rule', text: g.rule }) },
      { header: 'Apps', cell: (g) => listText(g.apps) },
      { header: 'Description', cell: (g) => g.description },
    ],
  });
  return section('Rules in force', table.element);
}

// ----------------------------------------------------------- preview --

function previewSection(context, rules) {
  const text = el('textarea', { name: 'rules', rows: '18', spellcheck: 'false', class: 'code-input' });
  // The preview takes the rule set in the shape GET /rules answers.
  text.value = JSON.stringify(rules, null, 2);
  const submit = el('button', { type: 'submit', class: 'primary', text: 'Preview' });
  const alert = alertRegion();
  const result = el('div', { class: 'preview-result', 'aria-live': 'polite' });
  const form = el('form', { class: 'stack-form' },
    field('Rule set (JSON)', text, 'Edit the rules, then preview who would gain or lose what.'),
    el('div', { class: 'button-row' }, submit, el('p', { class: 'note', text: 'Nothing is applied.' })));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearRegion(alert);
    const proposed = parseRuleSet(text.value);
    if (proposed.error) {
      result.replaceChildren();
      showError(alert, proposed.error);
      return;
    }
    try {
      const answer = await withBusy(submit, () =>
        apiPostJson('/rules/preview', proposed.value, { signal: context.signal }));
      result.replaceChildren(...previewView(answer));
    } catch (error) {
      result.replaceChildren();
      showError(alert, error);
    }
  });
  return section('Preview a change', form, alert, result);
}

/** The textarea's JSON, or an error saying why it is not a rule set. */
export function parseRuleSet(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { error: new Error(`The rule set is not valid JSON: ${error.message}`) };
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return { error: new Error('The rule set must be a JSON object such as {"groups": [...]}.') };
  }
  return { value };
}

function previewView(preview) {
  const same = preview.current_fingerprint === preview.proposed_fingerprint;
  const summary = el('p', { class: 'summary-line' },
    el('strong', { text: `${preview.persons_changed} of ${preview.persons} persons would change.` }),
    same ? ' The proposed rules are the rules in force.' : '');
  return [
    summary,
    movementTable('Group changes', 'Group', preview.groups),
    movementTable('App changes', 'App', preview.apps),
    changesTable(preview),
  ];
}

/** Per group (or app): how many persons gain and lose it; unchanged ones left out. */
function movementTable(title, header, movements) {
  const rows = Object.entries(movements || {})
    .filter(([, m]) => m.gaining || m.losing)
    .map(([name, m]) => ({ name, ...m }));
  return el('div', { class: 'subsection' }, el('h3', { text: title }), dataTable({
    label: title,
    rows,
    empty: `No ${header.toLowerCase()} gains or loses anyone.`,
    columns: [
      { header, cell: (r) => r.name },
      { header: 'Gaining', cell: (r) => String(r.gaining), numeric: true },
      { header: 'Losing', cell: (r) => String(r.losing), numeric: true },
    ],
  }).element);
}

function changesTable(preview) {
  const table = dataTable({
    label: 'Persons who would change',
    rows: preview.changes || [],
    empty: 'Nobody would change.',
    columns: [
      { header: 'Employee id', cell: (c) => personLink(c.employee_id), className: 'mono' },
      { header: 'Groups gained', cell: (c) => listText(c.groups_gained, '') },
      { header: 'Groups lost', cell: (c) => listText(c.groups_lost, '') },
      { header: 'Apps gained', cell: (c) => listText(c.apps_gained, '') },
      { header: 'Apps lost', cell: (c) => listText(c.apps_lost, '') },
    ],
  });
  const truncated = preview.changes_truncated
    ? el('p', { class: 'hint', text: `Only the first ${preview.changes.length} persons are listed; the counts are complete.` })
    : '';
  return el('div', { class: 'subsection' }, el('h3', { text: 'Persons who would change' }), table.element, truncated);
}
