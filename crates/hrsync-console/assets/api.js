// The console's only way to the server: the session, the admin API under
// /console/api/v1 (proxied with the session's access token) and sign-out.
//
// Every request sends the session cookie (same origin only). Every
// non-GET request carries the session's CSRF token, without which the
// server refuses it. A 401 means the session ended: the browser goes to
// sign-in and comes back to the same page.

const API_BASE = '/console/api/v1';

/** The signed-in session, as GET /console/session answered. */
let currentSession = null;

/** An error the server (or the network) gave, with the problem details. */
export class ApiError extends Error {
  constructor(message, status, problem = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
  }
}

export function session() {
  return currentSession;
}

/** The sign-in URL that brings the browser back to where it is now. */
export function loginUrl() {
  const here = window.location.pathname + window.location.search;
  return `/console/login?return_to=${encodeURIComponent(here)}`;
}

/** Reads the session once; a 401 goes to sign-in (and never resolves). */
export async function loadSession() {
  currentSession = await request('/console/session', { method: 'GET' });
  return currentSession;
}

/** GET an admin API path with query parameters (empty ones left out). */
export function apiGet(path, params = {}, { signal } = {}) {
  return request(API_BASE + path + queryString(params), { method: 'GET', signal });
}

/** POST JSON (or nothing) to an admin API path. */
export function apiPostJson(path, body, { params = {}, signal } = {}) {
  const init = { method: 'POST', signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  return request(API_BASE + path + queryString(params), init);
}

/** POST a raw body (an uploaded file) with its content type. */
export function apiPostBody(path, body, contentType, { params = {}, signal } = {}) {
  return request(API_BASE + path + queryString(params), {
    method: 'POST',
    body,
    headers: { 'Content-Type': contentType },
    signal,
  });
}

/**
 * Ends the session and goes where the server says (the signed-out page).
 * Only a same-origin path is followed.
 */
export async function signOut() {
  const answer = await request('/console/logout', { method: 'POST' });
  const target = answer && typeof answer.redirect === 'string' ? answer.redirect : '';
  const isLocal = target.startsWith('/') && !target.startsWith('//');
  window.location.assign(isLocal ? target : '/console/signed-out');
}

/** `?a=1&b=2` from an object, skipping empty values; '' when none. */
export function queryString(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** One path segment, encoded (employee ids and app names are free text). */
export function segment(value) {
  return encodeURIComponent(value);
}

async function request(url, { method, body, headers = {}, signal }) {
  const allHeaders = { Accept: 'application/json', ...headers };
  if (method !== 'GET' && currentSession) allHeaders['X-CSRF-Token'] = currentSession.csrf_token;
  let response;
  try {
    response = await fetch(url, { method, body, headers: allHeaders, signal, credentials: 'same-origin' });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(`Cannot reach hrsync (${error.message}). Check the connection and try again.`, 0);
  }
  if (response.status === 401) return goToSignIn();
  if (!response.ok) throw await problemError(response);
  return readBody(response);
}

// The page is about to be replaced by the sign-in flow: a promise that never
// settles keeps the current page from flashing an error on its way out.
function goToSignIn() {
  window.location.assign(loginUrl());
  return new Promise(() => {});
}

async function readBody(response) {
  if (response.status === 204) return null;
  const type = response.headers.get('Content-Type') || '';
  if (type.includes('json')) return response.json();
  return response.text();
}

/** An ApiError from an error response: its problem's detail, else the status. */
async function problemError(response) {
  const type = response.headers.get('Content-Type') || '';
  let problem = null;
  if (type.includes('json')) {
    try {
      problem = await response.json();
    } catch {
      problem = null;
    }
  }
  const fallback = `${response.status} ${response.statusText || 'error'}`.trim();
  const message = (problem && (problem.detail || problem.title)) || fallback;
  return new ApiError(message, response.status, problem);
}
