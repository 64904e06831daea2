// A real OAuth 2.0 authorization server (oidc-provider, npm) issuing JWT
// access tokens (RFC 9068) for hrsync's tests as a resource server, which
// checks bearer tokens against this issuer's JWKS:
//
//   node issuer.mjs
//
// listens on a free port of 127.0.0.1 and prints `listening on ISSUER` once
// it accepts connections. Discovery is at ISSUER/.well-known/openid-configuration
// (jwks_uri ISSUER/jwks, token_endpoint ISSUER/token, authorization_endpoint
// ISSUER/auth).
//
// Machine clients, all client_secret_basic with secret `<client_id>-secret`,
// grant client_credentials only, allowed scopes:
//   admin   hrsync:read hrsync:admin hrsync:events.write
//   viewer  hrsync:read
//   pusher  hrsync:events.write
//   brief   hrsync:read hrsync:admin hrsync:events.write, tokens live 2 s
// (oidc-provider takes the secret in the request body too, client_secret_post.)
// Asking for an hrsync scope the client is not allowed is refused (400
// invalid_scope); an unknown scope is dropped from the grant.
//
// A token request (`POST /token`, grant_type=client_credentials, scope=...,
// resource=URI) names the audience as an RFC 8707 resource indicator; any
// absolute URI is accepted (`https://hrsync.test/api` if none is given) and
// becomes the token's `aud`. The access token is a JWT (`typ` at+jwt) signed
// RS256 by the current key, whose `kid` its header names, with claims iss,
// aud, exp, iat, jti, sub (= client_id), client_id and scope (granted scopes,
// space-separated). Tokens live 300 s (2 s for `brief`).
//
// The browser console signs in with the authorization code flow: client
// `console`, public (token_endpoint_auth_method none, no secret), grant
// authorization_code, response_type code, PKCE required (S256 only, as
// oidc-provider 9 supports no other method), application_type native. Its
// one registered redirect URI is http://127.0.0.1/console/callback: for a
// native client, oidc-provider 9 (Client#redirectUriAllowed) compares a
// loopback redirect URI (http, host 127.0.0.1, localhost or [::1]) with the
// port left out (RFC 8252 section 7.3), so
// `http://127.0.0.1:<any port>/console/callback` is accepted; the token
// request must repeat the exact redirect_uri.
// Accounts, no passwords:
//   ada  "Ada Admin", ada@example.com, may get hrsync:read hrsync:admin
//   vic  "Vic Viewer", vic@example.com, may get hrsync:read
//   cleo "Cleo Claims", cleo@example.com, may get hrsync:read; her access
//        tokens carry `groups: ["hrsync-admins"]` (for hrsync's
//        `[oauth.roles]`, which grants scopes from a claim)
// The authorization request (`GET /auth`, scope e.g. `openid profile email
// hrsync:read hrsync:admin`, resource=URI as an RFC 8707 resource indicator,
// `https://hrsync.test/api` if none is given, code_challenge, state, nonce)
// leads to this file's own interaction pages (not oidc-provider's
// devInteractions): `GET /interaction/UID` is a login form, a text input
// labelled "Username" and a "Sign in" button, posted to
// `/interaction/UID/login`; an unknown username gets the form again with an
// error. The client may ask for any scope the issuer knows; the account
// decides. Consent is given without a page: the grant holds the requested
// OIDC scopes among openid, profile and email, and for the resource only
// the requested hrsync scopes the account may have (others are recorded as
// rejected, so not asked again). The code goes to the redirect URI; the
// token request (`POST /token`, grant_type=authorization_code, client_id,
// code, redirect_uri, code_verifier, resource=the same URI) answers an
// access token as above (aud = resource, sub = account id, client_id
// `console`, scope = granted hrsync scopes, 300 s) and an id_token (RS256)
// with sub, nonce, name and email (and email_verified). No refresh token.
// The provider's cookies are named op_session, op_interaction and
// op_interaction_resume, not to collide with the console's cookies on the
// same host (cookies do not tell ports apart). Sessions, interactions,
// grants and codes outlive `/test/rotate` (kept in memory by this file's
// adapter, shared by the providers it makes; the cookie keys stay).
//
// Signing keys are RSA 2048 keys generated at start, `key-1` first.
// `POST /test/rotate` makes a new key (`key-2`, `key-3`, ...) the signing key
// and answers {"kid": "<new kid>"}; the JWKS then lists the new key and the
// previous ones, or only the new key with `POST /test/rotate?retire=1`.
//
// `POST /test/sign` with a JSON body `{"header": {...}, "claims": {...}}`
// answers a JWT of those claims signed RS256 by the current key (`kid` and
// `alg` default to the current key's; `"kid": null` leaves it out), so tests
// can present tokens no client would get: another issuer, a future `nbf`,
// no `sub`. Answers {"token": "..."}.
import { createServer } from 'node:http';
import { createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';

import Provider from 'oidc-provider';

const DEFAULT_RESOURCE = 'https://hrsync.test/api';
const SCOPES = ['hrsync:read', 'hrsync:admin', 'hrsync:events.write'];
const CLIENTS = {
  admin: 'hrsync:read hrsync:admin hrsync:events.write',
  viewer: 'hrsync:read',
  pusher: 'hrsync:events.write',
  brief: 'hrsync:read hrsync:admin hrsync:events.write',
};
const TTL = 300;
const BRIEF_TTL = 2;

// The browser console's client and the people who sign in to it.
const CONSOLE = 'console';
const CONSOLE_REDIRECT_URI = 'http://127.0.0.1/console/callback';
const OIDC_SCOPES = ['openid', 'profile', 'email'];
const ACCOUNTS = {
  ada: { name: 'Ada Admin', email: 'ada@example.com', scope: 'hrsync:read hrsync:admin' },
  vic: { name: 'Vic Viewer', email: 'vic@example.com', scope: 'hrsync:read' },
  cleo: { name: 'Cleo Claims', email: 'cleo@example.com', scope: 'hrsync:read', groups: ['hrsync-admins'] },
};

// Private JWKs, the current signing key first.
let keys = [];
let keyCount = 0;
function newKey() {
  keyCount += 1;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: `key-${keyCount}`,
    alg: 'RS256',
    use: 'sig',
  };
}

const cookieKeys = [randomBytes(32).toString('base64url')];

// The providers' stored state (sessions, interactions, grants, codes), in
// memory and shared by every provider this process makes, so that it
// survives `/test/rotate` (oidc-provider's own in-memory adapter gives each
// provider a store of its own). JWT access tokens are not stored. An
// oidc-provider adapter: one instance per model name.
const stored = new Map();
class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const now = Date.now();
    for (const [key, entry] of stored) {
      if (entry.expiresAt <= now) {
        stored.delete(key);
      }
    }
    const expiresAt = typeof expiresIn === 'number' ? now + expiresIn * 1000 : Infinity;
    stored.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    const entry = stored.get(this.key(id));
    return entry && entry.expiresAt > Date.now() ? entry.payload : undefined;
  }

  #findBy(member, value) {
    const prefix = `${this.model}:`;
    const now = Date.now();
    for (const [key, entry] of stored) {
      if (key.startsWith(prefix) && entry.expiresAt > now && entry.payload[member] === value) {
        return entry.payload;
      }
    }
    return undefined;
  }

  async findByUid(uid) {
    return this.#findBy('uid', uid);
  }

  async findByUserCode(userCode) {
    return this.#findBy('userCode', userCode);
  }

  async consume(id) {
    const entry = stored.get(this.key(id));
    if (entry) {
      entry.payload.consumed = Math.floor(Date.now() / 1000);
    }
  }

  async destroy(id) {
    stored.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of stored) {
      if (entry.payload.grantId === grantId) {
        stored.delete(key);
      }
    }
  }
}

function makeProvider(issuer) {
  const signingKid = keys[0].kid;
  const provider = new Provider(issuer, {
    clients: [
      ...Object.entries(CLIENTS).map(([clientId, scope]) => ({
        client_id: clientId,
        client_secret: `${clientId}-secret`,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope,
      })),
      {
        client_id: CONSOLE,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        // Any port: see the header comment.
        redirect_uris: [CONSOLE_REDIRECT_URI],
      },
    ],
    // Listing the scopes here makes the provider refuse (invalid_scope) a
    // scope the client is not allowed rather than pass it on. openid,
    // profile and email come from `claims`.
    scopes: SCOPES,
    claims: {
      acr: null,
      auth_time: null,
      iss: null,
      sid: null,
      openid: ['sub'],
      profile: ['name'],
      email: ['email', 'email_verified'],
    },
    // name and email in the id_token too, not only from userinfo.
    conformIdTokenClaims: false,
    findAccount: async (ctx, id) => {
      const account = Object.hasOwn(ACCOUNTS, id) ? ACCOUNTS[id] : undefined;
      if (!account) {
        return undefined;
      }
      return {
        accountId: id,
        claims: async () => ({
          sub: id,
          name: account.name,
          email: account.email,
          email_verified: true,
        }),
      };
    },
    interactions: {
      url: async (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    pkce: { required: () => true },
    // An account's groups ride in its access tokens (JWT), as Okta puts
    // groups and Entra app roles there.
    extraTokenClaims: async (ctx, token) => {
      const account = token.accountId && Object.hasOwn(ACCOUNTS, token.accountId)
        ? ACCOUNTS[token.accountId] : undefined;
      return account?.groups ? { groups: account.groups } : undefined;
    },
    adapter: SharedMemoryAdapter,
    jwks: { keys },
    cookies: {
      keys: cookieKeys,
      names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Error', `<h1>Error</h1>${Object.entries(out)
        .map(([key, value]) => `<p><b>${escapeHtml(key)}</b>: ${escapeHtml(value)}</p>`).join('')}`);
    },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf ?? DEFAULT_RESOURCE,
        getResourceServerInfo: async (ctx, resourceIndicator, client) => ({
          audience: resourceIndicator,
          scope: SCOPES.join(' '),
          accessTokenFormat: 'jwt',
          accessTokenTTL: client.clientId === 'brief' ? BRIEF_TTL : TTL,
          jwt: { sign: { alg: 'RS256', kid: signingKid } },
        }),
      },
    },
    ttl: {
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? TTL,
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? TTL,
      IdToken: TTL,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
  });
  // Why a token request was refused, for the test's log.
  provider.on('grant.error', (ctx, error) => {
    const detail = [error.error_description, error.error_detail, error.scope && `scope ${error.scope}`]
      .filter(Boolean).join('; ');
    console.error(`token request refused: ${error.message}: ${detail}`);
  });
  provider.on('authorization.error', (ctx, error) => {
    const detail = [error.error_description, error.error_detail].filter(Boolean).join('; ');
    console.error(`authorization request refused: ${error.message}: ${detail}`);
  });
  provider.on('server_error', (ctx, error) => {
    console.error(`server error: ${error.stack ?? error}`);
  });
  return provider;
}

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
${body}
</body>
</html>
`;
}

function loginPage(uid, clientId, error) {
  const alert = error ? `<p role="alert">${escapeHtml(error)}</p>\n` : '';
  const action = `/interaction/${encodeURIComponent(uid)}/login`;
  return page('Sign in', `<h1>Sign in</h1>
<p>to ${escapeHtml(clientId)} (hrsync test issuer; users: ${Object.keys(ACCOUNTS).join(', ')})</p>
${alert}<form method="post" action="${action}">
<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" autofocus required>
<button type="submit">Sign in</button>
</form>`);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function sendHtml(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

// Consent without a page: the requested OIDC scopes among OIDC_SCOPES, and
// for each resource the requested hrsync scopes the account may have; the
// rest is recorded as rejected so the provider does not ask again.
async function grantConsent(provider, details) {
  const { prompt: { details: missing }, params, session: { accountId } } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) {
    const scopes = missing.missingOIDCScope;
    grant.addOIDCScope(scopes.filter((scope) => OIDC_SCOPES.includes(scope)));
    const other = scopes.filter((scope) => !OIDC_SCOPES.includes(scope));
    if (other.length) {
      grant.rejectOIDCScope(other);
    }
  }
  if (missing.missingOIDCClaims) {
    grant.addOIDCClaims(missing.missingOIDCClaims);
  }
  const allowed = new Set((ACCOUNTS[accountId]?.scope ?? '').split(' '));
  for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    const granted = scopes.filter((scope) => allowed.has(scope));
    const refused = scopes.filter((scope) => !allowed.has(scope));
    if (granted.length) {
      grant.addResourceScope(resource, granted);
    }
    if (refused.length) {
      grant.rejectResourceScope(resource, refused);
    }
  }
  return grant.save();
}

// The interaction pages (see the header comment): GET /interaction/UID and
// POST /interaction/UID/login.
async function interaction(provider, req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (error) {
    const reason = [error.message, error.error_description].filter(Boolean).join(': ');
    sendHtml(res, 400, page('Error', `<h1>Error</h1><p>${escapeHtml(reason)}</p>`));
    return;
  }
  if (details.uid !== uid) {
    sendHtml(res, 400, page('Error', '<h1>Error</h1><p>interaction mismatch</p>'));
    return;
  }
  const { prompt, params } = details;
  if (action === undefined && req.method === 'GET') {
    if (prompt.name === 'login') {
      sendHtml(res, 200, loginPage(uid, params.client_id));
      return;
    }
    if (prompt.name === 'consent') {
      const grantId = await grantConsent(provider, details);
      await provider.interactionFinished(req, res, { consent: { grantId } }, {
        mergeWithLastSubmission: true,
      });
      return;
    }
    sendHtml(res, 400, page('Error', `<h1>Error</h1><p>unknown prompt ${escapeHtml(prompt.name)}</p>`));
    return;
  }
  if (action === 'login' && req.method === 'POST' && prompt.name === 'login') {
    const username = new URLSearchParams(await readBody(req)).get('username')?.trim() ?? '';
    if (!Object.hasOwn(ACCOUNTS, username)) {
      sendHtml(res, 200, loginPage(uid, params.client_id, `Unknown user "${username}".`));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: username } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  if (req.method !== (action === undefined ? 'GET' : 'POST')) {
    res.writeHead(405, { allow: action === undefined ? 'GET' : 'POST' });
    res.end();
    return;
  }
  sendHtml(res, 400, page('Error', `<h1>Error</h1><p>no ${escapeHtml(prompt.name)} step expects this</p>`));
}

function base64url(value) {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

// Signs the posted claims with the current key (see the header comment).
function signClaims(req, res) {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    let request;
    try {
      request = JSON.parse(body);
    } catch (error) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`not JSON: ${error.message}`);
      return;
    }
    const key = keys[0];
    const header = { alg: 'RS256', typ: 'at+jwt', kid: key.kid, ...(request.header ?? {}) };
    if (header.kid === null) {
      delete header.kid;
    }
    const input = `${base64url(header)}.${base64url(request.claims ?? {})}`;
    const signature = sign('RSA-SHA256', Buffer.from(input), createPrivateKey({ key, format: 'jwk' }));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `${input}.${signature.toString('base64url')}` }));
  });
}

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  keys = [newKey()];
  let provider = makeProvider(issuer);
  let oidc = provider.callback();
  server.on('request', (req, res) => {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/test/sign' && req.method === 'POST') {
      signClaims(req, res);
      return;
    }
    const step = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
    if (step) {
      interaction(provider, req, res, step[1], step[2]).catch((error) => {
        console.error(`interaction error: ${error.stack ?? error}`);
        if (!res.headersSent) {
          sendHtml(res, 500, page('Error', `<h1>Error</h1><p>${escapeHtml(error.message)}</p>`));
        }
      });
      return;
    }
    if (url.pathname !== '/test/rotate') {
      oidc(req, res);
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' });
      res.end();
      return;
    }
    const key = newKey();
    keys = url.searchParams.get('retire') === '1' ? [key] : [key, ...keys];
    // Tokens already issued are self-contained JWTs: the new provider, with
    // the same issuer and static clients, needs nothing from the old one.
    provider = makeProvider(issuer);
    oidc = provider.callback();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: key.kid }));
  });
  console.log(`listening on ${issuer}`);
});
