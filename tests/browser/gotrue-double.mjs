// A test server that follows Supabase Auth's (GoTrue's) wire contract, for
// the Supabase tests (tests/api/supabase.rs). Its faithfulness is proven
// in the same run with the official client, @supabase/auth-js
// (gotrue-contract.mjs). What it follows (read from supabase/auth's
// internal/api around release 2.196): PKCE /authorize and /token?grant_type=pkce
// (single-use flow state, 300 s, S256), /token?grant_type=refresh_token with
// the v1 reuse rules of internal/tokens/service.go (a revoked token that is
// the parent of the active one returns the active one; another revoked
// token within the reuse interval of its revocation is swapped for a new
// child; after it refresh_token_already_used, and the family's tokens are
// revoked, the session kept), /logout?scope= (204; 401 no_authorization;
// 403 bad_jwt; 403 session_not_found), /user, the JWKS with an ES256 key
// (or HS256 with JWT_SECRET, keys unpublished), the 2024-01-01 error shape
// when X-Supabase-Api-Version asks for it, 429 over_request_rate_limit, and
// the caller's address taken from Sb-Forwarded-For (its first entry, when
// it is an IP address; else the socket's), as rate limits count it.
// Environment:
//   PORT, APIKEY, STATE_FILE (kept across restarts), JWT_SECRET (HS256 mode),
//   ACCESS_TTL (seconds, default 3600), REUSE_INTERVAL (seconds, default 10),
//   PROVIDER_URL, PROVIDER_REDIRECT_URI, PROVIDER_SCOPES (optional: "Google"
//   is then a real OpenID provider, tests/browser/vault-provider.mjs; the
//   consent signs in there, and the PKCE exchange returns its tokens as
//   provider_token / provider_refresh_token, as GoTrue does)
// Test-only endpoints, outside the contract: GET /__test/state,
// POST /__test/outage?on=1|0, POST /__test/rate-limit?count=N[&ip=ADDR]
// (the next N token calls, or those from ADDR, get 429),
// POST /__test/logout-answer?status=S&code=C[&count=N] (the next N logouts
// are answered S with error code C, whatever the token: the answers older
// Auth versions and gateways give, 401 and 404, and errors).
import http from "node:http";
import crypto from "node:crypto";
import net from "node:net";
import fs from "node:fs";
import * as jose from "jose";

const port = Number(process.env.PORT);
const base = `http://127.0.0.1:${port}/auth/v1`;
const apikey = process.env.APIKEY || "test-publishable-key";
const stateFile = process.env.STATE_FILE;
const secret = process.env.JWT_SECRET;
const accessTtl = Number(process.env.ACCESS_TTL || 3600);
const reuseInterval = Number(process.env.REUSE_INTERVAL || 10);
const providerUrl = process.env.PROVIDER_URL;

// Signs `login` in at the real provider (its consent, then the code
// exchange GoTrue's callback does): its tokens.
async function providerTokens(login) {
  const discovery = await (await fetch(`${providerUrl}/.well-known/openid-configuration`)).json();
  const verifier = crypto.randomBytes(32).toString("base64url");
  const challenge = crypto.createHash("sha256").update(verifier).digest("base64url");
  const redirectUri = process.env.PROVIDER_REDIRECT_URI;
  const authorize = new URL(discovery.authorization_endpoint);
  for (const [k, v] of Object.entries({
    response_type: "code", client_id: "chronos", redirect_uri: redirectUri,
    scope: process.env.PROVIDER_SCOPES || "openid email profile offline_access",
    state: crypto.randomUUID(), nonce: crypto.randomUUID(), prompt: "consent",
    code_challenge: challenge, code_challenge_method: "S256",
  })) authorize.searchParams.set(k, v);
  const consent = await (await fetch(`${providerUrl}/__test/consent?login=${encodeURIComponent(login)}&url=${encodeURIComponent(authorize.href)}`)).json();
  const code = new URL(consent.location).searchParams.get("code");
  const answer = await fetch(discovery.token_endpoint, {
    method: "POST",
    headers: {
      authorization: "Basic " + Buffer.from("chronos:chronos vault test secret").toString("base64"),
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: redirectUri, code_verifier: verifier }),
  });
  if (!answer.ok) throw new Error(`the provider refused the code: ${answer.status} ${await answer.text()}`);
  return answer.json();
}

const now = () => Math.floor(Date.now() / 1000);
const random = (n = 16) => crypto.randomBytes(n).toString("base64url");

// Everything that must survive a restart.
let state = {
  users: {},          // id -> user object
  flows: {},          // code -> {challenge, method, userId, redirectTo, createdAt}
  sessions: {},       // id -> {userId, createdAt}
  refreshTokens: {},  // token -> {sessionId, parent, revokedAt, createdAt}
  calls: [],          // what was asked of us
  key: null,          // the ES256 private key (JWK)
};
if (stateFile && fs.existsSync(stateFile)) state = JSON.parse(fs.readFileSync(stateFile, "utf8"));
const save = () => { if (stateFile) fs.writeFileSync(stateFile, JSON.stringify(state)); };

let privateKey, publicJwk;
if (!secret) {
  if (!state.key) {
    const { privateKey: k } = await jose.generateKeyPair("ES256", { extractable: true });
    state.key = await jose.exportJWK(k);
    state.key.kid = random(8);
    save();
  }
  privateKey = await jose.importJWK(state.key, "ES256");
  const { d, ...pub } = state.key;
  publicJwk = { ...pub, alg: "ES256", use: "sig" };
}
let outage = false;
let rateLimited = 0;
let rateLimitedIp = null;
let logoutAnswers = { count: 0, status: 0, code: "" };

// The caller's address as GoTrue's sbff package reads it: the first entry of
// Sb-Forwarded-For when it parses as an IP address, else the socket's.
function callerIp(req) {
  const first = (req.headers["sb-forwarded-for"] || "").split(",")[0].trim();
  if (first && net.isIP(first)) return first;
  return req.socket.remoteAddress.replace(/^::ffff:/, "");
}

function userFor(login) {
  const id = crypto.createHash("sha256").update(login).digest("hex").slice(0, 32)
    .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, "$1-$2-$3-$4-$5");
  if (!state.users[id]) {
    const email = `${login}@example.com`;
    state.users[id] = {
      id, aud: "authenticated", role: "authenticated", email,
      app_metadata: { provider: "google", providers: ["google"] },
      user_metadata: { full_name: `Person ${login}`, name: `Person ${login}`, avatar_url: `https://example.com/${login}.png`,
                       picture: `https://example.com/${login}.png`, email, email_verified: true, sub: login },
      identities: [], created_at: new Date(Date.UTC(2025, 0, 2, 3, 4, 5)).toISOString(),
      updated_at: new Date().toISOString(), is_anonymous: false,
    };
  }
  return state.users[id];
}

async function accessToken(sessionId, userId) {
  const user = state.users[userId];
  const iat = now();
  const claims = {
    sub: userId, aud: "authenticated", exp: iat + accessTtl, iat, iss: base,
    email: user.email, phone: "", app_metadata: user.app_metadata, user_metadata: user.user_metadata,
    role: "authenticated", aal: "aal1", amr: [{ method: "oauth", timestamp: iat }],
    session_id: sessionId, is_anonymous: false,
  };
  if (secret) {
    return new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .sign(new TextEncoder().encode(secret));
  }
  return new jose.SignJWT(claims).setProtectedHeader({ alg: "ES256", kid: state.key.kid, typ: "JWT" }).sign(privateKey);
}

async function verifyAccess(token) {
  try {
    const key = secret ? new TextEncoder().encode(secret) : await jose.importJWK(publicJwk, "ES256");
    const { payload } = await jose.jwtVerify(token, key, { issuer: base, audience: "authenticated" });
    return payload;
  } catch {
    return null;
  }
}

async function sessionAnswer(sessionId, refreshToken, withProviderTokens, provider) {
  const session = state.sessions[sessionId];
  const access = await accessToken(sessionId, session.userId);
  const body = {
    access_token: access, token_type: "bearer", expires_in: accessTtl, expires_at: now() + accessTtl,
    refresh_token: refreshToken, user: state.users[session.userId],
  };
  if (withProviderTokens && provider) {
    body.provider_token = provider.access_token;
    if (provider.refresh_token) body.provider_refresh_token = provider.refresh_token;
  } else if (withProviderTokens) {
    body.provider_token = "google-access-" + random(8);
  }
  return body;
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(body === undefined ? "" : JSON.stringify(body));
}

function fail(req, res, status, code, message) {
  const versioned = req.headers["x-supabase-api-version"] === "2024-01-01";
  const headers = { "x-sb-error-code": code };
  if (versioned) headers["X-Supabase-Api-Version"] = "2024-01-01";
  const body = versioned ? { code, message } : { code: status, error_code: code, msg: message };
  send(res, status, body, headers);
}

function readBody(req) {
  return new Promise((resolve) => {
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => resolve(data));
  });
}

// A logout: the session and its refresh tokens are deleted.
function endSession(sessionId) {
  delete state.sessions[sessionId];
  for (const [t, r] of Object.entries(state.refreshTokens)) if (r.sessionId === sessionId) delete state.refreshTokens[t];
}

// Reuse detected: every token of the session still active is revoked now
// (RevokeTokenFamily); the session itself stays.
function revokeFamily(sessionId) {
  for (const r of Object.values(state.refreshTokens)) {
    if (r.sessionId === sessionId && !r.revokedAt) r.revokedAt = Date.now() / 1000;
  }
}

// The session's most recently issued token that is not revoked.
function activeToken(sessionId) {
  let active;
  for (const [t, r] of Object.entries(state.refreshTokens)) {
    if (r.sessionId === sessionId && !r.revokedAt && (!active || r.seq > active[1].seq)) active = [t, r];
  }
  return active?.[0];
}

let issued = Object.values(state.refreshTokens).reduce((n, r) => Math.max(n, r.seq || 0), 0);
function newRefreshToken(sessionId, parent) {
  const token = random(16);
  state.refreshTokens[token] = { sessionId, parent, revokedAt: null, createdAt: now(), seq: ++issued };
  return token;
}

async function token(req, res, url) {
  const grant = url.searchParams.get("grant_type");
  const ip = callerIp(req);
  if (rateLimited > 0 && (rateLimitedIp === null || rateLimitedIp === ip)) {
    rateLimited--;
    state.calls.push({ call: "token", grant, forwardedFor: req.headers["sb-forwarded-for"] || null, ip, limited: true, at: Date.now() });
    return fail(req, res, 429, "over_request_rate_limit", "Request rate limit reached");
  }
  let body;
  try { body = JSON.parse(await readBody(req)); } catch { return fail(req, res, 400, "bad_json", "Could not parse request body as JSON"); }
  state.calls.push({ call: "token", grant, forwardedFor: req.headers["sb-forwarded-for"] || null, ip, at: Date.now() });
  if (grant === "pkce") {
    if (!body.auth_code || !body.code_verifier) return fail(req, res, 400, "validation_failed", "invalid request: both auth code and code verifier should be non-empty");
    const flow = state.flows[body.auth_code];
    if (!flow) return fail(req, res, 404, "flow_state_not_found", "invalid flow state, no valid flow state found");
    if (now() - flow.createdAt > 300) { delete state.flows[body.auth_code]; save(); return fail(req, res, 422, "flow_state_expired", "invalid flow state, flow state has expired"); }
    const challenge = crypto.createHash("sha256").update(body.code_verifier).digest("base64url");
    if (challenge !== flow.challenge) return fail(req, res, 400, "bad_code_verifier", "code challenge does not match previously saved code verifier");
    delete state.flows[body.auth_code];
    const sessionId = crypto.randomUUID();
    state.sessions[sessionId] = { userId: flow.userId, createdAt: now() };
    const refresh = newRefreshToken(sessionId, null);
    save();
    return send(res, 200, await sessionAnswer(sessionId, refresh, true, flow.provider));
  }
  if (grant === "refresh_token") {
    const presented = body.refresh_token;
    if (!presented || presented.length < 12) return fail(req, res, 400, "validation_failed", "Refresh Token is not valid");
    const record = state.refreshTokens[presented];
    if (!record) return fail(req, res, 400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found");
    if (!state.sessions[record.sessionId]) return fail(req, res, 400, "session_not_found", "Invalid Refresh Token: Session Not Found");
    if (record.revokedAt) {
      const active = activeToken(record.sessionId);
      if (active && state.refreshTokens[active].parent === presented) return send(res, 200, await sessionAnswer(record.sessionId, active, false));
      if (Date.now() / 1000 > record.revokedAt + reuseInterval) {
        revokeFamily(record.sessionId);
        save();
        return fail(req, res, 400, "refresh_token_already_used", "Invalid Refresh Token: Already Used");
      }
      // Within the reuse interval: swapped for a new child, like a live one.
    } else {
      record.revokedAt = Date.now() / 1000;
    }
    const next = newRefreshToken(record.sessionId, presented);
    save();
    return send(res, 200, await sessionAnswer(record.sessionId, next, false));
  }
  return fail(req, res, 400, "unsupported_grant_type", "unsupported grant type");
}

async function authenticated(req, res) {
  const header = req.headers.authorization || "";
  if (!header.startsWith("Bearer ")) { fail(req, res, 401, "no_authorization", "This endpoint requires a valid Bearer token"); return null; }
  const claims = await verifyAccess(header.slice(7));
  if (!claims) { fail(req, res, 403, "bad_jwt", "invalid JWT: unable to parse or verify signature, token has invalid claims: token is expired"); return null; }
  if (!state.sessions[claims.session_id]) { fail(req, res, 403, "session_not_found", "Session from session_id claim in JWT does not exist"); return null; }
  return claims;
}

const consentPage = (flowId) => `<!doctype html><meta charset="utf-8"><title>Google</title>
<form method="post" action="/__google/consent"><input type="hidden" name="flow" value="${flowId}">
<label>Account <input name="login" value="ann"></label><button type="submit">Continue</button></form>`;

const pending = {}; // flow id -> authorize parameters (not persisted: seconds-long)

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://127.0.0.1:${port}`);
  const path = url.pathname;
  try {
    if (path === "/__test/state") return send(res, 200, { calls: state.calls, sessions: Object.keys(state.sessions).length });
    if (path === "/__test/outage") { outage = url.searchParams.get("on") === "1"; return send(res, 200, { outage }); }
    if (path === "/__test/rate-limit") {
      rateLimited = Number(url.searchParams.get("count") || 1);
      rateLimitedIp = url.searchParams.get("ip");
      return send(res, 200, { rateLimited, ip: rateLimitedIp });
    }
    if (path === "/__test/logout-answer") {
      logoutAnswers = { count: Number(url.searchParams.get("count") || 1), status: Number(url.searchParams.get("status")), code: url.searchParams.get("code") || "unexpected_failure" };
      return send(res, 200, logoutAnswers);
    }
    if (outage) return send(res, 503, { message: "Service Unavailable" });
    if (path === "/auth/v1/.well-known/jwks.json") {
      return send(res, 200, { keys: secret ? [] : [publicJwk] }, { "Cache-Control": "public, max-age=600" });
    }
    if (path === "/auth/v1/authorize" && req.method === "GET") {
      const challenge = url.searchParams.get("code_challenge");
      const method = url.searchParams.get("code_challenge_method");
      if (!challenge !== !method) return fail(req, res, 400, "validation_failed", "PKCE flow requires code_challenge_method and code_challenge");
      if (challenge && !/^[A-Za-z0-9._~-]{43,128}$/.test(challenge)) return fail(req, res, 400, "validation_failed", "code challenge has to be between 43 and 128 characters");
      if (method && !["s256", "plain"].includes(method.toLowerCase())) return fail(req, res, 400, "validation_failed", "code challenge method not supported");
      const flowId = crypto.randomUUID();
      pending[flowId] = { challenge, method, redirectTo: url.searchParams.get("redirect_to"), provider: url.searchParams.get("provider"), scopes: url.searchParams.get("scopes") };
      res.writeHead(302, { Location: `/__google/consent?flow=${flowId}` });
      return res.end();
    }
    if (path === "/__google/consent" && req.method === "GET") {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      return res.end(consentPage(url.searchParams.get("flow")));
    }
    if (path === "/__google/consent" && req.method === "POST") {
      const form = new URLSearchParams(await readBody(req));
      const flow = pending[form.get("flow")];
      if (!flow) return send(res, 400, { message: "unknown flow" });
      delete pending[form.get("flow")];
      const login = form.get("login") || "ann";
      const user = userFor(login);
      user.identities = [{ provider: "google", id: login, identity_id: crypto.randomUUID(), user_id: user.id,
                           identity_data: { sub: login, email: user.email, email_verified: true } }];
      const code = crypto.randomUUID();
      const provider = providerUrl ? await providerTokens(login) : undefined;
      state.flows[code] = { challenge: flow.challenge, method: flow.method, userId: user.id, redirectTo: flow.redirectTo, createdAt: now(), provider };
      save();
      const target = new URL(flow.redirectTo);
      target.searchParams.set("code", code);
      res.writeHead(302, { Location: target.toString() });
      return res.end();
    }
    if (path.startsWith("/auth/v1/") && req.headers.apikey !== apikey) {
      return send(res, 401, { message: "No API key found in request", hint: "No `apikey` request header or url param was found." });
    }
    if (path === "/auth/v1/token" && req.method === "POST") return await token(req, res, url);
    if (path === "/auth/v1/logout" && req.method === "POST") {
      const scope = url.searchParams.get("scope") || "global";
      if (!["global", "local", "others"].includes(scope)) return fail(req, res, 400, "validation_failed", "Unsupported logout scope");
      if (logoutAnswers.count > 0) {
        logoutAnswers.count--;
        state.calls.push({ call: "logout", scope, ok: false, status: logoutAnswers.status, at: Date.now() });
        save();
        return fail(req, res, logoutAnswers.status, logoutAnswers.code, "Answered as the test asked");
      }
      const claims = await authenticated(req, res);
      state.calls.push({ call: "logout", scope, ok: Boolean(claims), status: claims ? 204 : res.statusCode, at: Date.now() });
      if (!claims) { save(); return; }
      const userId = state.sessions[claims.session_id].userId;
      for (const [id, s] of Object.entries(state.sessions)) {
        const mine = id === claims.session_id;
        if ((scope === "local" && mine) || (scope === "global" && s.userId === userId) || (scope === "others" && !mine && s.userId === userId)) endSession(id);
      }
      save();
      res.writeHead(204);
      return res.end();
    }
    if (path === "/auth/v1/user" && req.method === "GET") {
      const claims = await authenticated(req, res);
      state.calls.push({ call: "user", ok: Boolean(claims), at: Date.now() });
      save();
      if (!claims) return;
      return send(res, 200, state.users[claims.sub]);
    }
    return fail(req, res, 404, "not_found", "Not Found");
  } catch (error) {
    console.error(error);
    send(res, 500, { message: "internal error" });
  }
});
server.listen(port, "127.0.0.1", () => console.log("listening"));
