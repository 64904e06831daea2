// The admin console in headless Chromium, run by tests/e2e/console.rs
// against a running `hrsync run --role all` with the console served:
//
//   CONSOLE_URL=http://127.0.0.1:PORT SCREENSHOTS=DIR node e2e.mjs
//
// The stack holds Lucy Gray (Customer Support) and Tom Gray, both in slack,
// whose deprovision guard holds Tom's termination. As vic (a viewer): the
// guard's release is offered disabled, and refused when forced through the
// console's API (and without the CSRF token). As ada (an admin): find and
// open Lucy with the keyboard alone; search Lucy and see why she has slack; release the guard; see Tom's termination
// timed; reconcile slack through its dialog with the keyboard alone; preview a rule change; sign out. Each step saves a screenshot in
// SCREENSHOTS. Exits non-zero, saying what was wrong, on the first failure.
import assert from 'node:assert/strict';

import { launch, signIn } from './browser.mjs';

const url = process.env.CONSOLE_URL;
const shots = process.env.SCREENSHOTS;
assert.ok(url && shots, 'set CONSOLE_URL and SCREENSHOTS');

/** A fresh browser context at a laptop's size, in Berlin's time zone. */
async function freshPage(browser) {
  const context = await browser.newContext({
    viewport: { width: 1366, height: 768 },
    timezoneId: 'Europe/Berlin',
    locale: 'en-GB',
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  // Refusals (401 before sign-in, 403 to a viewer) are expected answers;
  // a server error is not.
  page.on('response', (response) => {
    if (response.status() >= 500) errors.push(`${response.status()} ${response.url()}`);
  });
  return { context, page, errors };
}

async function shot(page, name) {
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

/** POSTs to the console's API from the page, with or without its CSRF token. */
function forcedRelease(page, withCsrf) {
  return page.evaluate(async (send) => {
    const session = await (await fetch('/console/session')).json();
    const headers = send ? { 'X-CSRF-Token': session.csrf_token } : {};
    const answer = await fetch('/console/api/v1/apps/slack/guard/release', { method: 'POST', headers });
    return answer.status;
  }, withCsrf);
}

/** Runs `steps` on a fresh page; on a failure, saves the page as it was. */
async function withPage(browser, name, steps) {
  const { context, page, errors } = await freshPage(browser);
  try {
    await steps(page, errors);
  } catch (error) {
    await shot(page, `failed-${name}`).catch(() => {});
    const text = await page.locator('body').innerText().catch(() => '(no page)');
    console.error(`${name} failed at ${page.url()}; the page read:\n${text}`);
    throw error;
  } finally {
    await context.close();
  }
}

async function asViewer(page, errors) {
  await signIn(page, url, 'vic');
  await page.getByText('viewer', { exact: true }).first().waitFor();
  await page.getByRole('link', { name: 'Apps', exact: true }).click();
  await page.getByRole('link', { name: 'slack', exact: true }).first().click();
  await page.getByRole('heading', { level: 1, name: 'slack' }).waitFor();
  const release = page.getByRole('button', { name: 'Release guard' });
  await release.waitFor();
  assert.ok(await release.isDisabled(), 'a viewer is offered the release');
  await page.getByText('needs the admin role').first().waitFor();
  await shot(page, 'viewer-refused');
  assert.equal(await forcedRelease(page, true), 403, 'the API lets a viewer release the guard');
  assert.equal(await forcedRelease(page, false), 403, 'an action without the CSRF token passes');
  assert.deepEqual(errors, [], 'script or server errors');
}

/** Presses Tab until `locator` has the focus; fails after `most` presses. */
async function tabTo(page, locator, most = 30) {
  for (let presses = 0; presses < most; presses += 1) {
    if (await locator.evaluate((el) => el === document.activeElement)) return;
    await page.keyboard.press('Tab');
  }
  assert.fail(`${locator} is not reached by Tab`);
}

/** The keyboard alone: to the search box, type, to Lucy's row, open it. */
async function byKeyboard(page) {
  await page.goto(`${url}/console/people`);
  const search = page.getByLabel('Search people');
  await search.waitFor();
  await page.locator('body').focus();
  await tabTo(page, search);
  // Each keystroke searches again (debounced) and redraws the results: wait
  // for the search of the whole word, so the link the focus lands on is not
  // replaced by a later one.
  const searched = page.waitForResponse((r) => /\/api\/v1\/persons\?(.*&)?q=lucy(&|$)/.test(r.url()));
  await page.keyboard.type('lucy');
  await searched;
  await page.getByText('1 person.').waitFor();
  const lucy = page.getByRole('link', { name: /Lucy Gray/ });
  await lucy.waitFor();
  await tabTo(page, lucy);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Lucy Gray' }).waitFor();
}

async function whyLucyHasSlack(page) {
  await page.getByLabel('Search people').fill('lucy');
  await page.getByRole('link', { name: /Lucy Gray/ }).click();
  await page.getByRole('heading', { level: 1, name: 'Lucy Gray' }).waitFor();
  const groups = page.getByRole('table', { name: 'Groups' });
  await groups.waitFor();
  const groupText = await groups.innerText();
  assert.match(groupText, /Customer Support/);
  assert.ok(groupText.includes('person.department == "Customer Support"'), `the rule: ${groupText}`);
  const apps = await page.getByRole('table', { name: 'Apps of the person' }).innerText();
  assert.match(apps, /slack/);
  assert.match(apps, /Customer Support/, `slack granted by: ${apps}`);
  assert.match(apps, /payroll\s+Granted by Payroll users\s+Create task open\s+By hand/, `payroll: ${apps}`);
  // Her payroll account (an app without SCIM) waits for someone to make it.
  const tasks = await page.getByRole('table', { name: 'Open tasks of the person' }).innerText();
  assert.match(tasks, /payroll/, `Lucy's open tasks: ${tasks}`);
  assert.match(tasks, /Create/, `Lucy's payroll task is a create: ${tasks}`);
  await shot(page, 'person-why');
  // Listed among the apps without SCIM, with its open create.
  await page.getByRole('link', { name: 'Apps', exact: true }).click();
  const manual = page.getByRole('table', { name: 'Apps without SCIM' });
  await manual.waitFor();
  assert.match(await manual.innerText(), /payroll\s+1 create/, 'payroll among the apps without SCIM');
  await page.goBack();
  // The app's page: no SCIM, so no health; its open tasks, Lucy's among them.
  await page.getByRole('table', { name: 'Apps of the person' }).getByRole('link', { name: 'payroll' }).click();
  await page.getByRole('heading', { level: 1, name: 'payroll' }).waitFor();
  await page.getByText('An app without SCIM').waitFor();
  const open = await page.getByRole('table', { name: 'Open tasks of the app' }).innerText();
  assert.match(open, /E7/, `payroll's open tasks: ${open}`);
  assert.match(open, /Create/, `payroll's open tasks: ${open}`);
  await shot(page, 'manual-app');
}

async function releaseTheGuard(page) {
  await page.getByRole('link', { name: 'Apps', exact: true }).click();
  await page.getByRole('link', { name: 'slack', exact: true }).first().click();
  const release = page.getByRole('button', { name: 'Release guard' });
  await release.waitFor();
  assert.ok(await release.isEnabled(), 'an admin cannot release the tripped guard');
  await release.click();
  await page.getByRole('dialog').getByRole('button', { name: 'Confirm' }).click();
  await page.getByRole('status').filter({ hasText: 'Guard released' }).waitFor();
  const said = await page.getByRole('status').filter({ hasText: 'Guard released' }).innerText();
  assert.match(said, /1 of 1 held change applied/, said);
}

async function tomsTerminationTimed(page) {
  await page.getByRole('link', { name: 'Terminations', exact: true }).click();
  const table = page.getByRole('table', { name: 'Terminations' });
  // The release's deactivation is audited once slack has answered.
  for (let tries = 0; ; tries += 1) {
    await table.waitFor();
    const text = await table.innerText();
    if (/E8/.test(text) && /deactivated/i.test(text)) break;
    assert.ok(tries < 40, `Tom's termination is not listed as deactivated: ${text}`);
    await page.waitForTimeout(500);
    await page.reload();
  }
  const row = table.getByRole('row').filter({ hasText: 'E8' });
  const text = await row.innerText();
  assert.match(text, /\d+(\.\d+)? (ms|s|min)/, `a latency: ${text}`);
  // Held by the guard until released: over a minute is not expected, but
  // whatever it was is shown with its unit.
  await shot(page, 'terminations');
}

/**
 * The keyboard alone through an action dialog: to "Reconcile", Enter; the
 * dry run's classification; Escape closes the dialog and gives the focus
 * back; again, then to "Fix", Enter; the run's summary.
 */
async function reconcileByKeyboard(page) {
  await page.getByRole('link', { name: 'Apps', exact: true }).click();
  await page.getByRole('link', { name: 'slack', exact: true }).first().click();
  const reconcile = page.getByRole('button', { name: 'Reconcile' });
  await reconcile.waitFor();
  await page.locator('body').focus();
  await tabTo(page, reconcile);
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog');
  await dialog.getByText(/Dry run slack: \d+ accounts read/).waitFor();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.ok(await reconcile.evaluate((el) => el === document.activeElement),
    'the focus is not back on "Reconcile" after Escape');
  await page.keyboard.press('Enter');
  await dialog.getByText(/Dry run slack/).waitFor();
  const fix = dialog.getByRole('button', { name: 'Fix' });
  await tabTo(page, fix);
  await page.keyboard.press('Enter');
  const done = page.getByRole('status').filter({ hasText: 'Reconciled slack' });
  await done.waitFor();
  assert.match(await done.innerText(), /\d+ accounts read.*Every fix was applied\./s);
  await shot(page, 'reconciled');
}

async function previewARuleChange(page) {
  await page.getByRole('link', { name: 'Rules', exact: true }).click();
  const rules = page.getByLabel('Rule set (JSON)');
  await rules.waitFor();
  const edited = (await rules.inputValue()).replace(
    'person.department == \\"Customer Support\\"',
    'person.department == \\"Support\\"',
  );
  assert.ok(edited.includes('\\"Support\\"'), 'the Customer Support rule is not in the rule set');
  await rules.fill(edited);
  await page.getByRole('button', { name: 'Preview' }).click();
  const persons = page.getByRole('table', { name: 'Persons who would change' });
  await persons.waitFor();
  const text = await persons.innerText();
  assert.match(text, /E7/, `Lucy would lose Customer Support: ${text}`);
  assert.match(text, /Customer Support/, text);
  assert.doesNotMatch(text, /E8/, `only Lucy moves: ${text}`);
  await page.getByText('Nothing is applied.').waitFor();
  await shot(page, 'rules-preview');
}

/** Lucy's payroll account, made by hand: its task marked done with a note. */
async function closeLucysTask(page) {
  await page.getByRole('link', { name: 'Tasks', exact: true }).click();
  const table = page.getByRole('table', { name: 'Tasks' });
  await table.waitFor();
  const row = table.getByRole('row').filter({ hasText: 'E7' });
  const text = await row.innerText();
  assert.match(text, /Create/, `Lucy's payroll task is a create: ${text}`);
  assert.match(text, /payroll/, text);
  await shot(page, 'tasks');
  await row.getByRole('button', { name: 'Mark done' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Note (optional)').fill('made in Payroll');
  await dialog.getByRole('button', { name: 'Mark done' }).click();
  await page.getByRole('status').filter({ hasText: /Task #\d+ closed/ }).waitFor();
  await page.getByText('No open tasks.').waitFor();
}

async function asAdmin(page, errors) {
  await signIn(page, url, 'ada');
  await page.getByText('admin', { exact: true }).first().waitFor();
  await byKeyboard(page);
  await page.getByRole('link', { name: 'People', exact: true }).click();
  await whyLucyHasSlack(page);
  await releaseTheGuard(page);
  await tomsTerminationTimed(page);
  await reconcileByKeyboard(page);
  await previewARuleChange(page);
  await closeLucysTask(page);
  // No [hooks] in this stack: the page says so rather than failing.
  await page.getByRole('link', { name: 'Hooks', exact: true }).click();
  await page.getByText('Hooks are not configured').waitFor();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'You have signed out' }).waitFor();
  const after = await page.evaluate(async () => (await fetch('/console/session')).status);
  assert.equal(after, 401, 'the session outlives its sign-out');
  assert.deepEqual(errors, [], 'script or server errors');
}

const browser = await launch();
try {
  await withPage(browser, 'viewer', asViewer);
  console.log('viewer: the guard release offered disabled and refused');
  await withPage(browser, 'admin', asAdmin);
  console.log('admin: why, release, termination timed, reconcile by keyboard, rules preview, a task closed, sign-out');
} finally {
  await browser.close();
}
