// The OpenID Connect provider of tests/interop/test_sso_oidc.py: node-oidc-provider (pinned in
// package.json) with two test users, a plain HTML login form and automatic consent.
//
// Usage: node provider.mjs HOST PORT GATEWAY_BASE_URL
// Prints "ready ISSUER" on stdout once it listens. Test-only endpoint: POST /test/id-token-ttl
// with the new ID token lifetime in seconds as the body (to mint tokens that expire soon).
import http from 'node:http';
import { Provider } from 'oidc-provider';

const [host, port, gateway] = process.argv.slice(2);
const issuer = `http://${host}:${port}`;

const USERS = {
  alice: { password: 'alicepass', email: 'alice@corp.test', groups: ['vpn-eng', 'staff'] },
  bob: { password: 'bobpass', email: 'bob@corp.test', groups: ['vpn-ops'] },
};
let idTokenTtl = 600;

const configuration = {
  clients: [
    {
      client_id: 'ocgate',
      client_secret: 'ocgate-client-secret',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [`${gateway}/+CSCOE+/sso/oidc/return`],
      post_logout_redirect_uris: [`${gateway}/+CSCOE+/sso/logged-out`],
    },
    {
      client_id: 'other-app',
      client_secret: 'other-app-secret',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: ['https://other.test/callback'],
    },
  ],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'groups'],
    email: ['email'],
  },
  conformIdTokenClaims: false, // Scope claims go into the ID token too.
  cookies: { keys: ['ocgate-test-cookie-key'] },
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
  ttl: { IdToken: () => idTokenTtl },
  async findAccount(ctx, id) {
    const user = USERS[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, email: user.email, groups: user.groups };
      },
    };
  },
  async loadExistingGrant(ctx) {
    // First-party client: consent is implied.
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile email');
    grant.addOIDCClaims(['preferred_username', 'groups', 'email']);
    await grant.save();
    return grant;
  },
};

const provider = new Provider(issuer, configuration);
const handler = provider.callback();

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, error) {
  return `<!DOCTYPE html><html><head><title>Sign in</title></head><body>
<h1>Sign in to the test provider</h1>${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<input type="text" name="username" autofocus>
<input type="password" name="password">
<button type="submit">Sign in</button>
</form></body></html>\n`;
}

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name !== 'login') {
    // Consent is granted by loadExistingGrant; anything else finishes as is.
    await provider.interactionFinished(req, res, {}, { mergeWithLastSubmission: true });
    return;
  }
  if (req.method === 'GET' && !action) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginPage(uid));
    return;
  }
  const form = new URLSearchParams(await body(req));
  const username = form.get('username') || '';
  const user = USERS[username];
  if (!user || user.password !== form.get('password')) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginPage(uid, 'Invalid username or password.'));
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId: username } },
    { mergeWithLastSubmission: false });
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    const match = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
    if (match) {
      await interaction(req, res, match[1], match[2]);
      return;
    }
    if (url.pathname === '/test/id-token-ttl' && req.method === 'POST') {
      idTokenTtl = Number(await body(req));
      res.writeHead(204);
      res.end();
      return;
    }
    handler(req, res);
  } catch (err) {
    console.error(err);
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err));
  }
});

server.listen(Number(port), host, () => {
  console.log(`ready ${issuer}`);
});
