// A real OpenID provider (oidc-provider, npm) for hrsync's test of OAuth 2.0
// client credentials with private_key_jwt client authentication:
//
//   node server.mjs PUBLIC_KEY.pem [KEY_ID]
//
// registers one client, `hrsync`, authenticated by JWTs signed with the
// private key of PUBLIC_KEY.pem, registered under KEY_ID if given (the
// assertion's `kid` must then name it; token_endpoint_auth_method private_key_jwt,
// client_credentials grant, scope `scim`), and listens on a free port of
// 127.0.0.1. Besides the provider's own endpoints (token endpoint `/token`),
// `GET /scim/ServiceProviderConfig` stands in for a SCIM app: it answers only
// a request bearing an access token this provider issued and that is still
// valid. Prints `listening on ISSUER` once it accepts connections.
import { createServer } from 'node:http';
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const [publicKeyFile, keyId] = process.argv.slice(2);
if (!publicKeyFile) {
  console.error('usage: node server.mjs PUBLIC_KEY.pem [KEY_ID]');
  process.exit(2);
}
const jwk = createPublicKey(readFileSync(publicKeyFile)).export({ format: 'jwk' });
if (keyId) {
  jwk.kid = keyId;
}

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'hrsync',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [{ ...jwk, use: 'sig' }] },
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'scim',
      },
    ],
    scopes: ['scim'],
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
    },
  });
  // Why a token request was refused (the response says only
  // `invalid_client`), for the test's log.
  provider.on('grant.error', (ctx, error) => {
    console.error(`token request refused: ${error.message}: ${error.error_detail ?? ''}`);
  });
  const oidc = provider.callback();
  server.on('request', async (req, res) => {
    if (!req.url.startsWith('/scim/')) {
      oidc(req, res);
      return;
    }
    const [scheme, value] = (req.headers.authorization ?? '').split(' ');
    const token = scheme?.toLowerCase() === 'bearer' && value
      ? await provider.ClientCredentials.find(value)
      : undefined;
    if (!token || token.isExpired || token.clientId !== 'hrsync') {
      res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/scim+json' });
    res.end(JSON.stringify({
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig'],
      patch: { supported: true },
      bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
      filter: { supported: true, maxResults: 100 },
      changePassword: { supported: false },
      sort: { supported: false },
      etag: { supported: false },
      authenticationSchemes: [{
        type: 'oauthbearertoken',
        name: 'OAuth Bearer Token',
        description: `access tokens from ${issuer}/token`,
      }],
    }));
  });
  console.log(`listening on ${issuer}`);
});
