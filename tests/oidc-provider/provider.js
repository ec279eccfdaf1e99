// A real OpenID provider for Scribe's black-box tests: the certified `oidc-provider`
// package, on 127.0.0.1 and a free port, with a fixed set of test users, a login form
// that checks their passwords, and a small control API for the tests.
//
//   node provider.js ['{"conformIdTokenClaims": false, "port": 0}']
//
// Prints one JSON line `{"issuer": "http://127.0.0.1:<port>"}` once it listens, and exits
// when its standard input closes (the test that started it is gone).
//
// Control API (JSON over HTTP, for the tests only):
//   POST /__test/clients            {client_id, client_secret, redirect_uris,
//                                    token_endpoint_auth_method}  registers or replaces a client
//   POST /__test/accounts/<id>      {password?, claims}  creates or replaces a user
//   DELETE /__test/accounts/<id>    removes a user: their refresh tokens stop working
//   GET /__test/token-requests      [{client_id, method, grant_type}] of every token request
//
// Behaviour worth knowing: the token endpoint insists on the client authentication method
// a client was registered with (oidc-provider itself takes client_secret_basic and
// client_secret_post interchangeably), so a test sees which one Scribe used; refresh tokens are issued to every client allowed the
// refresh_token grant (as Keycloak does, no offline_access needed); consent is implied
// (first-party clients); with `conformIdTokenClaims` (the default) the ID token carries
// only `sub` and the scope claims come from the userinfo endpoint, without it they are in
// the ID token as well (as Keycloak sends them).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const options = JSON.parse(process.argv[2] || '{}');

// The fixed test users. Passwords are checked by the login form below.
const accounts = new Map(Object.entries({
  alice: {
    password: 'alice-password',
    claims: { email: 'alice@example.org', email_verified: true, roles: 'scribe-user' },
  },
  bob: {
    password: 'bob-password',
    claims: { email: 'bob@example.org', email_verified: true, roles: ['staff', 'scribe-admin'] },
  },
  carol: {
    password: 'carol-password',
    claims: { email: 'carol@example.org', email_verified: false, roles: 'scribe-user' },
  },
  dave: {
    password: 'dave-password',
    claims: { email: 'dave@example.org', email_verified: true, roles: ['staff', 'visitor'] },
  },
  erin: {
    password: 'erin-password',
    claims: { email: 'erin@example.org', email_verified: true },
  },
}));

// Everything the provider stores (clients registered through the control API, sessions,
// interactions, codes, tokens, grants), in memory.
const store = new Map();

class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
    store.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt < Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findBy(field, value) {
    for (const [key, entry] of store) {
      if (key.startsWith(`${this.model}:`) && entry.payload[field] === value) {
        return entry.payload;
      }
    }
    return undefined;
  }

  async findByUid(uid) {
    return this.findBy('uid', uid);
  }

  async findByUserCode(userCode) {
    return this.findBy('userCode', userCode);
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of store) {
      if (entry.payload.grantId === grantId) store.delete(key);
    }
  }
}

// Every token request: which client, authenticated how, for which grant.
const tokenRequests = [];

const SCOPES = ['openid', 'email', 'roles', 'offline_access'];

// A signing key of this run's own (the package's development keys are the same everywhere).
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  use: 'sig',
  alg: 'RS256',
  kid: randomBytes(8).toString('hex'),
};

const configuration = {
  adapter: MemoryAdapter,
  jwks: { keys: [signingKey] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    roles: ['roles'],
  },
  scopes: SCOPES,
  conformIdTokenClaims: options.conformIdTokenClaims ?? true,
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
  },
  interactions: {
    url(_ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
  async findAccount(_ctx, id) {
    const account = accounts.get(id);
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...account.claims };
      },
    };
  },
  // First-party clients: consent is implied for every scope the client asked for.
  async loadExistingGrant(ctx) {
    const { client, session, params, provider, result } = ctx.oidc;
    const grantId = result?.consent?.grantId || session.grantIdFor(client.clientId);
    const grant = (grantId && (await provider.Grant.find(grantId)))
      || new provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    const requested = String(params.scope || 'openid').split(' ').filter((s) => SCOPES.includes(s));
    grant.addOIDCScope(requested.join(' '));
    await grant.save();
    return grant;
  },
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 120,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
    RefreshToken: 3600,
  },
};

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, error) {
  const message = error ? `<p class="error">${escapeHtml(error)}</p>` : '';
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in to the test provider</h1>
${message}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
  <input type="text" name="login" placeholder="user name" autofocus>
  <input type="password" name="password" placeholder="password">
  <button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort">
  <button type="submit">Cancel</button>
</form>
</body></html>`;
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function interaction(provider, req, res, path) {
  const [, , uid, action] = path.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, 'text/plain', 'interaction mismatch');
    return;
  }
  if (req.method === 'GET' && !action) {
    if (details.prompt.name !== 'login') {
      send(res, 501, 'text/plain', `prompt ${details.prompt.name} is not implemented`);
      return;
    }
    send(res, 200, 'text/html; charset=utf-8', loginPage(uid));
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    const form = new URLSearchParams(await readBody(req));
    const login = form.get('login') || '';
    const account = accounts.get(login);
    if (!account || account.password !== form.get('password')) {
      send(res, 200, 'text/html; charset=utf-8', loginPage(uid, 'Invalid user name or password'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  if (req.method === 'POST' && action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }
  send(res, 404, 'text/plain', 'not found');
}

// Notes how the client authenticated, refuses a method other than the registered one, and
// hands the request (its body already read) on to the provider.
async function tokenEndpoint(req, res, callback) {
  const body = await readBody(req);
  req.body = body;
  const form = new URLSearchParams(body);
  const authorization = req.headers.authorization || '';
  let method = 'none';
  let clientId = form.get('client_id');
  if (/^basic /i.test(authorization)) {
    method = 'client_secret_basic';
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
    clientId = decodeURIComponent(decoded.split(':')[0].replace(/\+/g, ' '));
  } else if (form.has('client_secret')) {
    method = 'client_secret_post';
  }
  tokenRequests.push({ client_id: clientId, method, grant_type: form.get('grant_type') });
  const client = clientId ? await new MemoryAdapter('Client').find(clientId) : undefined;
  const registered = client?.token_endpoint_auth_method;
  if (registered && registered !== method) {
    send(res, 401, 'application/json', JSON.stringify({
      error: 'invalid_client',
      error_description: `the client authenticates with ${registered}, not ${method}`,
    }));
    return;
  }
  callback(req, res);
}

async function control(req, res, path) {
  const parts = path.split('/').filter(Boolean); // ['__test', kind, id?]
  const body = req.method === 'POST' ? JSON.parse((await readBody(req)) || '{}') : {};
  if (req.method === 'POST' && parts[1] === 'clients') {
    const metadata = {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      ...body,
    };
    await new MemoryAdapter('Client').upsert(metadata.client_id, metadata);
    send(res, 200, 'application/json', JSON.stringify({ ok: true }));
    return;
  }
  if (req.method === 'GET' && parts[1] === 'token-requests') {
    send(res, 200, 'application/json', JSON.stringify(tokenRequests));
    return;
  }
  if (parts[1] === 'accounts' && parts[2]) {
    if (req.method === 'POST') {
      const existing = accounts.get(parts[2]);
      accounts.set(parts[2], {
        password: body.password ?? existing?.password ?? `${parts[2]}-password`,
        claims: body.claims ?? existing?.claims ?? {},
      });
      send(res, 200, 'application/json', JSON.stringify({ ok: true }));
      return;
    }
    if (req.method === 'DELETE') {
      accounts.delete(parts[2]);
      send(res, 200, 'application/json', JSON.stringify({ ok: true }));
      return;
    }
  }
  send(res, 404, 'application/json', JSON.stringify({ error: 'unknown control route' }));
}

const server = http.createServer();
server.listen(options.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration);
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    let handled;
    if (path.startsWith('/interaction/')) {
      handled = interaction(provider, req, res, path);
    } else if (path.startsWith('/__test/')) {
      handled = control(req, res, path);
    } else if (path === '/token' && req.method === 'POST') {
      handled = tokenEndpoint(req, res, callback);
    } else {
      callback(req, res);
      return;
    }
    handled.catch((err) => {
      process.stderr.write(`${err.stack || err}\n`);
      if (!res.headersSent) send(res, 500, 'text/plain', String(err.message || err));
    });
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// The test that started this process is gone when our standard input closes.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
