// The console's shell: the signed-in user in the top bar, the router
// (History API, links intercepted, back and forward re-render), the
// document title, and the pages that need no module of their own.

import { loadSession, session, signOut } from './api.js';
import {
  alertRegion, clearRegion, el, emptyState, pageHeading, showError, withBusy,
} from './ui.js';
import * as people from './people.js';
import * as person from './person.js';
import * as apps from './apps.js';
import * as appPage from './app_page.js';
import * as terminations from './terminations.js';
import * as tasks from './tasks.js';
import * as hooks from './hooks.js';
import * as log from './log.js';
import * as imports from './imports.js';
import * as rules from './rules.js';

const PRODUCT = 'hrsync';

// Paths under /console that the server answers itself; links to them are
// real navigations, never client-side routes.
const SERVER_PATHS = ['/console/login', '/console/callback', '/console/logout',
  '/console/session', '/console/api/', '/console/assets/'];

const SIGNED_OUT = '/console/signed-out';

/**
 * The client-side routes: a pattern over the path, the page module
 * (`render(context)`), and which nav link is current.
 */
const ROUTES = [
  { pattern: /^\/console\/?$/, page: people, nav: 'people' },
  { pattern: /^\/console\/people\/?$/, page: people, nav: 'people' },
  { pattern: /^\/console\/people\/([^/]+)\/?$/, page: person, nav: 'people' },
  { pattern: /^\/console\/apps\/?$/, page: apps, nav: 'apps' },
  { pattern: /^\/console\/apps\/([^/]+)\/?$/, page: appPage, nav: 'apps' },
  { pattern: /^\/console\/terminations\/?$/, page: terminations, nav: 'terminations' },
  { pattern: /^\/console\/tasks\/?$/, page: tasks, nav: 'tasks' },
  { pattern: /^\/console\/hooks\/?$/, page: hooks, nav: 'hooks' },
  { pattern: /^\/console\/log\/?$/, page: log, nav: 'log' },
  { pattern: /^\/console\/imports\/?$/, page: imports, nav: 'imports' },
  { pattern: /^\/console\/rules\/?$/, page: rules, nav: 'rules' },
];

const notFound = { render: renderNotFound };

/** Aborts the requests of the page being left. */
let pageController = null;

/** Starts the console: the session first, then the page the URL names. */
export async function start() {
  const main = document.getElementById('main');
  document.addEventListener('click', interceptLink);
  window.addEventListener('popstate', () => renderRoute({ moveFocus: true }));
  if (isSignedOutPage()) {
    renderSignedOut(main);
    return;
  }
  try {
    await loadSession();
  } catch (error) {
    renderSessionError(main, error);
    return;
  }
  renderUser(session());
  document.getElementById('nav').hidden = false;
  await renderRoute({ moveFocus: false });
}

/** Goes to a console path (with its query) as if a link had been followed. */
export function navigate(pathAndQuery, { replace = false } = {}) {
  // Following a link to the page already shown reloads it without adding
  // a history entry that "back" would have to step through.
  const same = pathAndQuery === window.location.pathname + window.location.search;
  if (replace || same) window.history.replaceState(null, '', pathAndQuery);
  else window.history.pushState(null, '', pathAndQuery);
  window.scrollTo(0, 0);
  return renderRoute({ moveFocus: true });
}

/** Sets the document title: "People — hrsync". */
export function setTitle(pageName) {
  document.title = pageName ? `${pageName} — ${PRODUCT}` : PRODUCT;
}

function isSignedOutPage() {
  return window.location.pathname.replace(/\/$/, '') === SIGNED_OUT;
}

// ------------------------------------------------------------ router --

async function renderRoute({ moveFocus }) {
  if (pageController) pageController.abort();
  pageController = new AbortController();
  // A dialog belongs to the page it was opened on (closing one cancels it).
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  const main = document.getElementById('main');
  if (isSignedOutPage()) {
    renderSignedOut(main);
    return;
  }
  const { route, params } = matchRoute(window.location.pathname);
  markCurrentNav(route ? route.nav : null);
  main.replaceChildren();
  const context = {
    main,
    params,
    query: new URLSearchParams(window.location.search),
    session: session(),
    signal: pageController.signal,
    setTitle,
    navigate,
  };
  const page = route ? route.page : notFound;
  const rendering = page.render(context);
  // Each page puts its h1 in place before its first request, so focus can
  // move there at once: screen readers then announce the new page.
  if (moveFocus) focusHeading(main);
  try {
    await rendering;
  } catch (error) {
    showPageError(main, error);
  }
}

function matchRoute(path) {
  for (const route of ROUTES) {
    const match = route.pattern.exec(path);
    if (match) return { route, params: match.slice(1).map(decodeSegment) };
  }
  return { route: null, params: [] };
}

function decodeSegment(value) {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function focusHeading(main) {
  const heading = main.querySelector('h1');
  if (heading) heading.focus({ preventScroll: true });
}

/** An error a page did not handle itself: shown below whatever it drew. */
function showPageError(main, error) {
  const alert = alertRegion();
  main.append(alert);
  showError(alert, error);
}

/**
 * Follows same-origin console links through the router. Modified clicks
 * (new tab, new window), links with a target or to server paths, and
 * in-page anchors are left to the browser.
 */
function interceptLink(event) {
  // Without a session (the signed-out page) every link is a full navigation.
  if (!session() || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target instanceof Element ? event.target.closest('a[href]') : null;
  if (!link || link.target || link.hasAttribute('download')) return;
  if (link.getAttribute('href').startsWith('#')) return;
  const url = new URL(link.href, window.location.href);
  if (url.origin !== window.location.origin || !isClientRoute(url.pathname)) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

function isClientRoute(path) {
  if (path !== '/console' && !path.startsWith('/console/')) return false;
  return !SERVER_PATHS.some((prefix) => path === prefix || path.startsWith(prefix));
}

function markCurrentNav(current) {
  for (const link of document.querySelectorAll('#nav a[data-nav]')) {
    if (link.dataset.nav === current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

// -------------------------------------------------------------- user --

/** The top bar's right side: who is signed in, their role, "Sign out". */
function renderUser(current) {
  const area = document.getElementById('user');
  const isAdmin = Boolean(current.can_act);
  const role = el('span', {
    class: `badge role ${isAdmin ? 'badge-info' : 'badge-muted'}`,
    title: isAdmin ? 'Can run admin actions' : 'Can read, not act',
    text: isAdmin ? 'admin' : 'viewer',
  });
  const name = el('span', { class: 'user-name', text: current.name || current.subject });
  if (current.name) name.title = current.subject;
  const button = el('button', { type: 'button', class: 'ghost', text: 'Sign out' });
  button.addEventListener('click', () => withBusy(button, () => signOutOrShow(button)));
  area.replaceChildren(el('span', { class: 'visually-hidden', text: 'Signed in as' }), name, role, button);
  area.hidden = false;
}

async function signOutOrShow() {
  const main = document.getElementById('main');
  let alert = main.querySelector('.signout-alert');
  if (!alert) {
    alert = alertRegion();
    alert.classList.add('signout-alert');
    main.prepend(alert);
  }
  clearRegion(alert);
  try {
    await signOut();
  } catch (error) {
    showError(alert, error);
  }
}

// ----------------------------------------------------- simple pages --

function renderSignedOut(main) {
  setTitle('Signed out');
  document.getElementById('nav').hidden = true;
  document.getElementById('user').hidden = true;
  main.replaceChildren(el('div', { class: 'centered' },
    pageHeading('You have signed out'),
    el('p', { text: 'Your console session has ended.' }),
    el('p', {}, el('a', { class: 'button-link', href: '/console/login', text: 'Sign in' }))));
}

function renderSessionError(main, error) {
  setTitle('Unavailable');
  const alert = alertRegion();
  const retry = el('button', { type: 'button', class: 'primary', text: 'Try again' });
  retry.addEventListener('click', () => window.location.reload());
  main.replaceChildren(el('div', { class: 'centered' },
    pageHeading('The console cannot start'),
    el('p', { text: 'The session could not be read.' }), alert, retry));
  showError(alert, error);
}

function renderNotFound(context) {
  context.setTitle('Not found');
  context.main.append(
    pageHeading('Page not found'),
    emptyState('There is no console page at this address.'),
    el('p', {}, el('a', { href: '/console/people', text: 'Go to People' })));
}
