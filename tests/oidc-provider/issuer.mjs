// A real OAuth 2.0 authorization server (oidc-provider, npm) issuing JWT
// access tokens (RFC 9068) for hrsync's tests as a resource server, which
// checks bearer tokens against this issuer's JWKS:
//
//   node issuer.mjs
//
// listens on a free port of 127.0.0.1 and prints `listening on ISSUER` once
// it accepts connections. Discovery is at ISSUER/.well-known/openid-configuration
// (jwks_uri ISSUER/jwks, token_endpoint ISSUER/token).
//
// Clients, all client_secret_basic with secret `<client_id>-secret`, grant
// client_credentials only, allowed scopes:
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

function makeProvider(issuer) {
  const signingKid = keys[0].kid;
  const provider = new Provider(issuer, {
    clients: Object.entries(CLIENTS).map(([clientId, scope]) => ({
      client_id: clientId,
      client_secret: `${clientId}-secret`,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope,
    })),
    // Listing the scopes here makes the provider refuse (invalid_scope) a
    // scope the client is not allowed rather than pass it on.
    scopes: SCOPES,
    jwks: { keys },
    cookies: { keys: cookieKeys },
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
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? TTL,
    },
  });
  // Why a token request was refused, for the test's log.
  provider.on('grant.error', (ctx, error) => {
    const detail = [error.error_description, error.error_detail, error.scope && `scope ${error.scope}`]
      .filter(Boolean).join('; ');
    console.error(`token request refused: ${error.message}: ${detail}`);
  });
  provider.on('server_error', (ctx, error) => {
    console.error(`server error: ${error.stack ?? error}`);
  });
  return provider.callback();
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
  let oidc = makeProvider(issuer);
  server.on('request', (req, res) => {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/test/sign' && req.method === 'POST') {
      signClaims(req, res);
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
    oidc = makeProvider(issuer);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: key.kid }));
  });
  console.log(`listening on ${issuer}`);
});
