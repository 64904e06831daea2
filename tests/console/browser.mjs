// The Node side of hrsync's browser tests of the admin console:
// playwright-core (npm, pinned in package.json; it downloads no browser)
// driving the system's Chromium, `/usr/bin/chromium` (Debian's `chromium`
// package; scripts/test installs it) or the one $CHROMIUM names.
//
//   import { launch, signIn } from './browser.mjs';
//   const browser = await launch();
//   const page = await browser.newPage();
//   await signIn(page, 'http://127.0.0.1:PORT', 'ada');
//
// signIn goes through the console's login with tests/oidc-provider/issuer.mjs
// as the OpenID provider: its login page has a "Username" field and a
// "Sign in" button, and accounts `ada` (hrsync:read hrsync:admin) and `vic`
// (hrsync:read).
import { chromium } from 'playwright-core';

/** Starts a headless Chromium. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  });
}

/**
 * Signs `username` in to the console at `consoleUrl` (its origin, e.g.
 * http://127.0.0.1:PORT): opens `${consoleUrl}/console/`, which sends the
 * browser to the provider's login page, fills in "Username", clicks
 * "Sign in", and waits until the browser is back under
 * `${consoleUrl}/console/`.
 */
export async function signIn(page, consoleUrl, username) {
  const base = `${consoleUrl.replace(/\/+$/, '')}/console/`;
  await page.goto(base);
  const field = page.getByLabel('Username');
  await field.waitFor();
  await field.fill(username);
  await page.getByRole('button', { name: 'Sign in' }).click();
  // The callback (`/console/callback`) is under the console too: wait for
  // the page it sends the browser on to.
  await page.waitForURL((url) => url.href.startsWith(base) && !url.pathname.endsWith('/console/callback'));
}
