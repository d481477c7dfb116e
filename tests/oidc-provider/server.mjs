// panva/oidc-provider (OpenID Certified) on loopback, for tokenbridge's end-to-end tests: a
// generic OpenID provider that is not ours, plus a small API that accepts only access tokens
// it validates against the provider's keys. Interactions complete without a form: the test
// names the user with `?user=` on the interaction URL.
//
// Environment: CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, POST_LOGOUT_REDIRECT_URI,
// BACKCHANNEL_LOGOUT_URI (the app under test; Back-Channel Logout tokens go there), REFRESH ("offline": refresh tokens only for a granted offline_access, as OpenID
// Connect Core 11 and this provider's default; "always": for every code grant, without
// offline_access), CLIENT_CERTIFICATES (optional: a PEM file of certificates; the client then
// authenticates with private_key_jwt, signed by one of their keys, and has no secret), PORT
// (default: any free port). Prints "listening <issuer>" once it serves. Never listens beyond
// loopback.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set`);
  return value;
};

const server = createServer();
await new Promise((resolve) => server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
const api = `${issuer}/api`;

const { privateKey, publicKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await jose.exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };

const counters = {
  token_requests: 0, refreshes: 0, refresh_errors: 0, revocations: 0, grants_revoked: 0,
  backchannel_logouts: 0, backchannel_errors: 0,
  // private_key_jwt: client assertions on requests that succeeded, by signing algorithm.
  client_assertions: {},
};

// private_key_jwt: the client's public keys, from the certificates it registered.
const certificates = process.env.CLIENT_CERTIFICATES
  ? readFileSync(process.env.CLIENT_CERTIFICATES, 'utf8')
    .split(/(?=-----BEGIN CERTIFICATE-----)/)
    .filter((block) => block.includes('BEGIN CERTIFICATE'))
    .map((block) => new X509Certificate(block).publicKey.export({ format: 'jwk' }))
  : null;
const clientAuth = certificates
  ? { token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: certificates } }
  : { client_secret: env('CLIENT_SECRET'), token_endpoint_auth_method: 'client_secret_basic' };
const countAssertion = (ctx) => {
  const assertion = ctx.oidc?.params?.client_assertion;
  if (!assertion) return;
  const { alg } = jose.decodeProtectedHeader(assertion);
  counters.client_assertions[alg] = (counters.client_assertions[alg] ?? 0) + 1;
};
const behaviour = { fail_revocation: false };

const provider = new Provider(issuer, {
  clients: [{
    client_id: env('CLIENT_ID'),
    ...clientAuth,
    redirect_uris: [env('REDIRECT_URI')],
    post_logout_redirect_uris: [env('POST_LOGOUT_REDIRECT_URI')],
    backchannel_logout_uri: env('BACKCHANNEL_LOGOUT_URI'),
    backchannel_logout_session_required: false,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: ['tokenbridge-test-cookie-key'] },
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'api.read', 'tasks.read'],
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email'] },
  conformIdTokenClaims: false,
  rotateRefreshToken: true,
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        const name = id.charAt(0).toUpperCase() + id.slice(1);
        return { sub: id, name, preferred_username: `${id}@example.test`, email: `${id}@example.test` };
      },
    };
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ...(process.env.REFRESH === 'always'
    ? { issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token') }
    : {}),
  // The app under test listens on loopback, which the provider's SSRF protection refuses to
  // call (Back-Channel Logout): this provider itself serves loopback only, and calls only the
  // URI registered above.
  fetch: (url, options) => {
    const { dispatcher: _ssrfGuard, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = `<!doctype html><title>Sign out</title>${form}<button form="op.logoutForm" name="logout" value="yes">Sign out</button>`;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => api,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        // Two APIs with disjoint scopes share the audience, as one authorization server's
        // APIs do at Auth0, Okta or Keycloak: a token narrowed to one scope serves one API.
        scope: 'api.read tasks.read',
        audience: api,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 3600,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
});

provider.on('grant.revoked', () => { counters.grants_revoked += 1; });
provider.on('backchannel.success', () => { counters.backchannel_logouts += 1; });
provider.on('backchannel.error', (_ctx, error) => {
  counters.backchannel_errors += 1;
  console.error(`backchannel logout failed: ${error?.message ?? error}`);
});
provider.on('grant.success', (ctx) => {
  if (ctx.oidc.params.grant_type === 'refresh_token') counters.refreshes += 1;
  countAssertion(ctx);
});
provider.on('grant.error', (ctx) => {
  if (ctx.oidc.params.grant_type === 'refresh_token') counters.refresh_errors += 1;
});
provider.use(async (ctx, next) => {
  if (ctx.path === '/token') counters.token_requests += 1;
  if (ctx.path === '/token/revocation') {
    counters.revocations += 1;
    if (behaviour.fail_revocation) {
      ctx.status = 503;
      ctx.body = { error: 'temporarily_unavailable' };
      return;
    }
  }
  await next();
  // Revocation has no success event: a 200 here is one.
  if (ctx.path === '/token/revocation' && ctx.status === 200) countAssertion(ctx);
});

const json = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
};

const keys = jose.createLocalJWKSet({
  keys: [{ ...(await jose.exportJWK(publicKey)), kid: 'test-key', alg: 'RS256', use: 'sig' }],
});

// A bearer token the provider issued for the APIs, with `scope`: its payload, or the refusal
// already answered.
async function bearer(req, res, scope) {
  const [scheme, token] = (req.headers.authorization ?? '').split(' ');
  if (scheme !== 'Bearer' || !token) return json(res, 401, { error: 'invalid_token' });
  let payload;
  try {
    ({ payload } = await jose.jwtVerify(token, keys, { issuer, audience: api }));
  } catch (e) {
    return json(res, 401, { error: 'invalid_token', error_description: e.code ?? 'invalid' });
  }
  if (!String(payload.scope ?? '').split(' ').includes(scope)) {
    res.setHeader('www-authenticate', `Bearer error="insufficient_scope", scope="${scope}"`);
    return json(res, 403, { error: 'insufficient_scope' });
  }
  return payload;
}

// The second API: GET /tasks/v1.0/me/tasks, for tokens with tasks.read.
async function tasks(req, res) {
  const payload = await bearer(req, res, 'tasks.read');
  if (payload === undefined) return undefined;
  return json(res, 200, { owner: `${payload.sub}@example.test`, value: [{ id: '1', title: 'Write tests' }] });
}

// The API: GET /api/v1.0/me with a bearer token the provider issued for it.
async function me(req, res) {
  const payload = await bearer(req, res, 'api.read');
  if (payload === undefined) return undefined;
  const name = payload.sub.charAt(0).toUpperCase() + payload.sub.slice(1);
  return json(res, 200, {
    id: payload.sub,
    displayName: name,
    userPrincipalName: `${payload.sub}@example.test`,
    mail: `${payload.sub}@example.test`,
  });
}

// Interactions without a form: `?user=NAME` signs NAME in and consents to what was asked;
// without it, the pending prompt is answered as JSON, so a test can see what was asked.
async function interaction(req, res, url) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  const user = url.searchParams.get('user');
  if (!user) return json(res, 200, { prompt: prompt.name, reasons: prompt.reasons });
  if (prompt.name === 'login') {
    return provider.interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false });
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function admin(req, res, url) {
  if (url.pathname === '/test/counters') return json(res, 200, counters);
  if (url.pathname === '/test/behaviour' && req.method === 'POST') {
    let body = '';
    for await (const chunk of req) body += chunk;
    Object.assign(behaviour, JSON.parse(body || '{}'));
    return json(res, 200, behaviour);
  }
  return json(res, 404, { error: 'not_found' });
}

const callback = provider.callback();
server.on('request', async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname === '/api/v1.0/me' && req.method === 'GET') return await me(req, res);
    if (url.pathname === '/tasks/v1.0/me/tasks' && req.method === 'GET') return await tasks(req, res);
    if (url.pathname.startsWith('/interaction/') && req.method === 'GET') return await interaction(req, res, url);
    if (url.pathname.startsWith('/test/')) return await admin(req, res, url);
    return callback(req, res);
  } catch (e) {
    return json(res, 500, { error: 'server_error', error_description: String(e?.message ?? e) });
  }
});

console.log(`listening ${issuer}`);
