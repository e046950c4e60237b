// "Google" for the token-vault tests (tests/api/vault.rs): a real,
// certified OpenID provider (npm oidc-provider) with refresh-token
// rotation, revocation and introspection, a resource server that accepts
// only the provider's active access tokens with the calendar scope, and a
// RISC transmitter whose keys the test serves. Configured from the
// environment:
//   OP_PORT           where it listens (127.0.0.1)
//   RP_REDIRECT_URI   the frontend callback Chronos sends people back to
// It prints "listening" when ready. Test-only helpers, outside the OIDC
// surface, under /__test/; the resource server at /calendar.
import { createServer } from "node:http";
import Provider from "oidc-provider";
import * as jose from "jose";

const port = Number(process.env.OP_PORT);
const issuer = `http://127.0.0.1:${port}`;
const risc = `${issuer}/risc`;

const stats = { refreshes: 0, revocations: 0, codes: 0 };
// accountId -> Set of refresh token jtis issued for it.
const refreshTokens = new Map();

const provider = new Provider(issuer, {
  clients: [{
    client_id: "chronos",
    client_secret: "chronos vault test secret",
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    redirect_uris: [process.env.RP_REDIRECT_URI],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.com`, email_verified: true, name: `Person ${id}` };
      },
    };
  },
  scopes: ["openid", "offline_access", "email", "profile", "calendar"],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  rotateRefreshToken: true,
  ttl: { AccessToken: 3600, RefreshToken: 86400, Grant: 86400, Session: 86400, Interaction: 3600 },
  pkce: { required: () => true },
  cookies: { keys: ["chronos oidc-provider vault test cookie key"] },
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
});

provider.on("refresh_token.saved", (token) => {
  if (!refreshTokens.has(token.accountId)) refreshTokens.set(token.accountId, new Set());
  refreshTokens.get(token.accountId).add(token.jti);
});
provider.on("grant.success", (ctx) => {
  if (ctx.oidc.params.grant_type === "refresh_token") stats.refreshes += 1;
  if (ctx.oidc.params.grant_type === "authorization_code") stats.codes += 1;
});
provider.on("grant.revoked", () => { stats.revocations += 1; });
provider.on("server_error", (ctx, error) => console.error("provider error:", error));

async function activeRefreshToken(accountId) {
  for (const jti of refreshTokens.get(accountId) ?? []) {
    const token = await provider.RefreshToken.find(jti);
    if (token && !token.isExpired && !token.consumed) return true;
  }
  return false;
}

// The person consents at the provider: follows the authorization URL
// through the dev interactions (login, then consent) to the redirect.
async function consent(url, login) {
  const jar = new Map();
  const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
  const keep = (response) => {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const at = pair.indexOf("=");
      jar.set(pair.slice(0, at), pair.slice(at + 1));
    }
  };
  let next = { url, method: "GET" };
  for (let step = 0; step < 20; step += 1) {
    if (next.url.startsWith(process.env.RP_REDIRECT_URI)) return next.url;
    const response = await fetch(next.url, {
      method: next.method,
      redirect: "manual",
      headers: { cookie: cookieHeader(), ...(next.body ? { "content-type": "application/x-www-form-urlencoded" } : {}) },
      body: next.body,
    });
    keep(response);
    const location = response.headers.get("location");
    if (location) {
      next = { url: new URL(location, next.url).href, method: "GET" };
      continue;
    }
    const page = await response.text();
    const prompt = page.includes('name="prompt" value="login"') ? "login" : "consent";
    const body = prompt === "login" ? `prompt=login&login=${encodeURIComponent(login)}` : "prompt=consent";
    next = { url: next.url, method: "POST", body };
  }
  throw new Error("the consent did not reach the redirect");
}

// The RISC transmitter's keys (and one it does not publish).
const riscKey = await jose.generateKeyPair("RS256");
const forgedKey = await jose.generateKeyPair("RS256");
const riscJwk = { ...(await jose.exportJWK(riscKey.publicKey)), kid: "risc-1", alg: "RS256", use: "sig" };

async function securityEvent({ events, aud = "chronos", iss = risc, forged = false, jti = crypto.randomUUID() }) {
  return new jose.SignJWT({ jti, events })
    .setProtectedHeader({ alg: "RS256", kid: "risc-1", typ: "secevent+jwt" })
    .setIssuer(iss)
    .setAudience(aud)
    .setIssuedAt()
    .sign(forged ? forgedKey.privateKey : riscKey.privateKey);
}

async function readJson(req) {
  let text = "";
  for await (const chunk of req) text += chunk;
  return text ? JSON.parse(text) : {};
}

function send(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

const callback = provider.callback();
createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname === "/calendar") {
      const header = req.headers.authorization ?? "";
      const token = header.startsWith("Bearer ") ? await provider.AccessToken.find(header.slice(7)) : undefined;
      if (!token || token.isExpired) return send(res, 401, { error: "invalid_token" });
      if (!token.scope.split(" ").includes("calendar")) return send(res, 403, { error: "insufficient_scope" });
      return send(res, 200, { sub: token.accountId });
    }
    if (url.pathname === "/__test/consent") {
      return send(res, 200, { location: await consent(url.searchParams.get("url"), url.searchParams.get("login")) });
    }
    if (url.pathname === "/__test/stats") return send(res, 200, stats);
    if (url.pathname === "/__test/refresh-active") {
      return send(res, 200, { active: await activeRefreshToken(url.searchParams.get("sub")) });
    }
    if (url.pathname === "/__test/revoke") {
      // The person revokes the app's access at the provider.
      const accountId = url.searchParams.get("sub");
      for (const jti of refreshTokens.get(accountId) ?? []) {
        const token = await provider.RefreshToken.find(jti);
        if (token) {
          const grant = await provider.Grant.find(token.grantId);
          if (grant) await grant.destroy();
          await token.destroy();
        }
      }
      return send(res, 200, { revoked: accountId });
    }
    if (url.pathname === "/__test/risc-token") return send(res, 200, { token: await securityEvent(await readJson(req)) });
    if (url.pathname === "/risc/.well-known/risc-configuration") {
      return send(res, 200, { issuer: risc, jwks_uri: `${risc}/jwks`, delivery_methods_supported: ["https://schemas.openid.net/secevent/risc/delivery-method/push"] });
    }
    if (url.pathname === "/risc/jwks") return send(res, 200, { keys: [riscJwk] });
  } catch (error) {
    console.error("test helper error:", error);
    return send(res, 500, { error: String(error) });
  }
  return callback(req, res);
}).listen(port, "127.0.0.1", () => console.log("listening"));
