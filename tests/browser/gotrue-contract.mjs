// Proves the GoTrue test server (gotrue-double.mjs) faithful to Supabase
// Auth's wire contract as the official client sees it: @supabase/auth-js
// itself drives every behaviour the Chronos tests (tests/api/supabase.rs,
// supabase_browser.rs) rely on, with the reuse interval they run with:
// the PKCE sign-in with Chronos's parameters, single-use codes and bound
// verifiers, the ES256 JWKS (auth-js verifies the access token against it)
// or HS256 with the legacy secret, getUser, refresh rotation and the reuse
// window, the 429 over_request_rate_limit counted by Sb-Forwarded-For,
// signOut with scope local and global, and the logout answers auth-js (and
// Chronos) take for "already signed out" (401, 403, 404) and those it does
// not (5xx). Run by tests/api/supabase.rs with GOTRUE_URL (…/auth/v1),
// APIKEY, REUSE_INTERVAL (the server's, seconds) and, for an HS256 server,
// JWT_SECRET; prints one "ok: ..." line per check, and exits non-zero on
// the first failure. Only the consent page (the browser's part) and the
// server's test-only endpoints are reached with plain fetch.
import { GoTrueClient } from "@supabase/auth-js";
import * as jose from "jose";

const url = process.env.GOTRUE_URL;
const apikey = process.env.APIKEY;
const reuseInterval = Number(process.env.REUSE_INTERVAL);
const secret = process.env.JWT_SECRET;
const mode = secret ? "hs256" : "es256";
const project = url.replace(/\/auth\/v1$/, "");
const redirectTo = "http://localhost:5173/auth/web/callback";

// auth-js keeps the PKCE verifier in its storage (JSON-encoded): a visible
// one here.
const storage = () => {
  const items = new Map();
  return {
    items,
    getItem: (k) => items.get(k) ?? null,
    setItem: (k, v) => items.set(k, v),
    removeItem: (k) => items.delete(k),
  };
};
const client = ({ store = storage(), headers = {} } = {}) =>
  new GoTrueClient({
    url, headers: { apikey, ...headers }, flowType: "pkce", persistSession: true, storage: store,
    storageKey: "sb-test", autoRefreshToken: false, detectSessionInUrl: false,
  });

const check = (what, condition, detail) => {
  if (!condition) {
    console.error(`FAILED (${mode}): ${what}: ${JSON.stringify(detail)}`);
    process.exit(1);
  }
  console.log(`ok (${mode}): ${what}`);
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The server's test-only endpoints.
const control = (path) => fetch(`${project}${path}`, { method: "POST" }).then((r) => r.json());
const calls = async (kind) =>
  (await (await fetch(`${project}/__test/state`)).json()).calls.filter((c) => c.call === kind);

/// Follows the authorize URL as a browser would, as `login`; the code.
async function authorize(authorizeUrl, login) {
  const first = await fetch(authorizeUrl, { redirect: "manual" });
  const consent = new URL(first.headers.get("location"), authorizeUrl);
  const flow = consent.searchParams.get("flow");
  const back = await fetch(new URL("/__google/consent", authorizeUrl), {
    method: "POST", redirect: "manual",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ flow, login }),
  });
  return new URL(back.headers.get("location")).searchParams.get("code");
}

// The parameters Chronos sends (SUPABASE_SCOPES, SUPABASE_AUTH_PARAMS).
const oauth = { provider: "google", options: { redirectTo, skipBrowserRedirect: true } };
// Where auth-js (outside a browser, no flow id in the callback) reads the
// verifier of the flow started last.
const VERIFIER = "sb-test-code-verifier";

/// A signed-in client for `login`: {client, store, session, user}.
async function signedIn(login, headers = {}) {
  const store = storage();
  const c = client({ store, headers });
  const { data: start } = await c.signInWithOAuth(oauth);
  const { data, error } = await c.exchangeCodeForSession(await authorize(start.url, login));
  if (error) check(`${login} signs in`, false, error);
  return { client: c, store, session: data.session, user: data.user };
}

// --- Sign-in: PKCE with Chronos's parameters, one code, one verifier ---
const storeA = storage();
const a = client({ store: storeA });
const { data: start } = await a.signInWithOAuth({
  provider: "google",
  options: {
    redirectTo, skipBrowserRedirect: true, scopes: "https://www.googleapis.com/auth/calendar",
    queryParams: { access_type: "offline", prompt: "consent" },
  },
});
const authorizeUrl = new URL(start.url);
const p = authorizeUrl.searchParams;
check("signInWithOAuth builds /authorize with the parameters Chronos sends (provider, redirect_to, PKCE s256, scopes, extra params)",
  authorizeUrl.pathname === "/auth/v1/authorize" && p.get("provider") === "google" && p.get("redirect_to").startsWith(redirectTo)
    && p.get("code_challenge_method") === "s256" && p.get("code_challenge")?.length === 43
    && p.get("scopes") === "https://www.googleapis.com/auth/calendar" && p.get("access_type") === "offline" && p.get("prompt") === "consent",
  start.url);
const code = await authorize(start.url, "ann");
const verifier = storeA.items.get(VERIFIER);
const { data: signedInA, error: exchangeError } = await a.exchangeCodeForSession(code);
check("exchangeCodeForSession answers a session", !exchangeError && signedInA.session?.access_token && signedInA.session?.refresh_token, exchangeError);
const userA = signedInA.user;
check("the session's user is the one who consented, with the profile Chronos shows",
  userA?.email === "ann@example.com" && userA.user_metadata?.full_name === "Person ann"
    && userA.user_metadata?.avatar_url === "https://example.com/ann.png" && userA.created_at === "2025-01-02T03:04:05.000Z",
  userA);
const accessA = signedInA.session.access_token;
const claimsA = jose.decodeJwt(accessA);
check("the access token says iss SUPABASE_URL/auth/v1, aud authenticated, the session_id, and expires_at is its exp",
  claimsA.iss === url && claimsA.aud === "authenticated" && claimsA.sub === userA.id && typeof claimsA.session_id === "string"
    && signedInA.session.expires_at === claimsA.exp,
  claimsA);
// The same code again, with its verifier put back: auth-js sends it.
storeA.items.set(VERIFIER, verifier);
const { error: again } = await a.exchangeCodeForSession(code);
check("a code works once (404 flow_state_not_found)", again?.status === 404 && again?.code === "flow_state_not_found", again);
{
  const s = storage();
  const c = client({ store: s });
  const { data: st } = await c.signInWithOAuth(oauth);
  const stolen = await authorize(st.url, "ann");
  s.items.set(VERIFIER, JSON.stringify("a".repeat(43))); // not this flow's verifier
  const { error } = await c.exchangeCodeForSession(stolen);
  check("a code with another flow's verifier is refused (400 bad_code_verifier)", error?.status === 400 && error?.code === "bad_code_verifier", error);
  await c.signInWithOAuth(oauth); // a verifier of its own, for a code it never got
  const { error: unknown } = await c.exchangeCodeForSession("not-a-code");
  check("an unknown code is refused (404 flow_state_not_found)", unknown?.status === 404 && unknown?.code === "flow_state_not_found", unknown);
}

// --- The access token checked locally: the JWKS (ES256) or the secret (HS256) ---
const userCalls = (await calls("user")).length;
const { data: verified, error: claimsError } = await a.getClaims(accessA);
if (mode === "es256") {
  check("getClaims verifies the ES256 access token against the JWKS, without asking /user",
    !claimsError && verified.header.alg === "ES256" && verified.header.kid && verified.claims.session_id === claimsA.session_id
      && (await calls("user")).length === userCalls,
    claimsError ?? verified.header);
  const [h, , sig] = accessA.split(".");
  const forged = `${h}.${jose.base64url.encode(JSON.stringify({ ...claimsA, sub: "someone-else" }))}.${sig}`;
  const { error: forgedError } = await a.getClaims(forged);
  check("getClaims refuses the same token with its payload changed", forgedError?.name === "AuthInvalidJwtError", forgedError);
} else {
  check("an HS256 project's token is signed with the JWT secret (what SUPABASE_JWT_SECRET verifies)",
    jose.decodeProtectedHeader(accessA).alg === "HS256"
      && (await jose.jwtVerify(accessA, new TextEncoder().encode(secret), { issuer: url, audience: "authenticated" })).payload.sub === userA.id,
    jose.decodeProtectedHeader(accessA));
  check("getClaims cannot check HS256 locally and asks /user",
    !claimsError && verified.claims.sub === userA.id && (await calls("user")).length === userCalls + 1, claimsError);
  const other = await new jose.SignJWT(claimsA).setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .sign(new TextEncoder().encode("another secret of at least thirty-two bytes"));
  const { error: otherError } = await a.getClaims(other);
  check("a token signed with another secret is refused (403 bad_jwt)", otherError?.status === 403 && otherError?.code === "bad_jwt", otherError);
  // auth-js has no call for the key set: a plain read.
  const jwks = await (await fetch(`${url}/.well-known/jwks.json`)).json();
  check("an HS256 project publishes no keys (so Chronos without the secret cannot verify)", Array.isArray(jwks.keys) && jwks.keys.length === 0, jwks);
}
const { data: who, error: userError } = await a.getUser(accessA);
check("getUser reads the user with the access token", !userError && who.user.id === userA.id, userError);

// --- Refresh: rotation, the parent, the reuse window ---
check("the server runs with a reuse interval to test (REUSE_INTERVAL)", reuseInterval >= 2, reuseInterval);
const r0 = signedInA.session.refresh_token;
const { data: d1, error: e1 } = await a.refreshSession({ refresh_token: r0 });
const r0RevokedAt = Date.now();
check("refreshSession rotates the refresh token", !e1 && d1.session.refresh_token !== r0, e1);
const r1 = d1.session.refresh_token;
const { data: d1again, error: e1again } = await a.refreshSession({ refresh_token: r0 });
check("the parent of the active token returns the active one", !e1again && d1again.session.refresh_token === r1, e1again);
const { data: d2, error: e2 } = await a.refreshSession({ refresh_token: r1 });
check("the active token rotates again", !e2 && d2.session.refresh_token !== r1, e2);
{
  // Another session, whose grandparent token is presented within the window.
  const b = await signedIn("ann");
  const b0 = b.session.refresh_token;
  const { data: b1 } = await b.client.refreshSession({ refresh_token: b0 });
  const { data: b2 } = await b.client.refreshSession({ refresh_token: b1.session.refresh_token });
  const { data: within, error: withinError } = await b.client.refreshSession({ refresh_token: b0 });
  check(`an older revoked token within the reuse interval (${reuseInterval} s) is still accepted`,
    !withinError && within.session.refresh_token && within.session.refresh_token !== b0, withinError);
  const { error: usable } = await client().refreshSession({ refresh_token: within.session.refresh_token });
  check("and the token it gets refreshes", !usable, usable);
  const { error: stillActive } = await client().refreshSession({ refresh_token: b2.session.refresh_token });
  check("the active token of that session stays usable", !stillActive, stillActive);
}
const { error: unknownToken } = await a.refreshSession({ refresh_token: "not-a-token-we-issued" });
check("an unknown refresh token is refused (400 refresh_token_not_found)", unknownToken?.status === 400 && unknownToken?.code === "refresh_token_not_found", unknownToken);

// --- 429 over_request_rate_limit, counted by Sb-Forwarded-For ---
{
  const c = await signedIn("carol");
  await control("/__test/rate-limit?count=1");
  const { error } = await c.client.refreshSession({ refresh_token: c.session.refresh_token });
  check("a rate-limited refresh is 429 over_request_rate_limit", error?.status === 429 && error?.code === "over_request_rate_limit", error);
  // A client of its own: auth-js remembers a failed token for a while.
  const { error: after } = await client().refreshSession({ refresh_token: c.session.refresh_token });
  check("and the refresh token is still good afterwards", !after, after);

  const forOne = await signedIn("dave", { "Sb-Forwarded-For": "203.0.113.7" });
  const forOther = await signedIn("erin", { "Sb-Forwarded-For": "203.0.113.8" });
  await control("/__test/rate-limit?count=1&ip=203.0.113.7");
  const { error: other } = await forOther.client.refreshSession({ refresh_token: forOther.session.refresh_token });
  const { error: limited } = await forOne.client.refreshSession({ refresh_token: forOne.session.refresh_token });
  check("the limit counts the address in Sb-Forwarded-For, not the caller's socket",
    !other && limited?.status === 429 && limited?.code === "over_request_rate_limit", { other, limited });
  const seen = (await calls("token")).filter((t) => t.forwardedFor === "203.0.113.7");
  check("as auth-js sends the header (one address, the first entry)", seen.length >= 2 && seen.every((t) => t.ip === "203.0.113.7"), seen);
}

// --- signOut: local and global, and the answers meaning "already signed out" ---
{
  const laptop = await signedIn("frank");
  const phone = await signedIn("frank");
  const { error } = await laptop.client.signOut({ scope: "local" });
  check("signOut (local) succeeds", !error, error);
  const { error: gone } = await laptop.client.getUser(laptop.session.access_token);
  check("after it that session is gone (403 session_not_found)", gone?.name === "AuthSessionMissingError", gone);
  const { error: refreshGone } = await client().refreshSession({ refresh_token: laptop.session.refresh_token });
  check("and its refresh token with it", refreshGone?.status === 400 && refreshGone?.code === "refresh_token_not_found", refreshGone);
  const { error: phoneOk } = await phone.client.getUser(phone.session.access_token);
  check("the user's other session is untouched by a local signOut", !phoneOk, phoneOk);

  // The wire answers, read through auth-js's own logout call.
  const { error: again } = await laptop.client.admin.signOut(laptop.session.access_token, "local");
  check("a second logout is 403 session_not_found (read from the 2024-01-01 shape)", again?.name === "AuthSessionMissingError", again);
  const { error: noToken } = await laptop.client.admin.signOut("", "local");
  check("a logout without a token is 401 no_authorization", noToken?.status === 401 && noToken?.code === "no_authorization", noToken);
  const { error: badJwt } = await laptop.client.admin.signOut("not.a.jwt", "local");
  check("a logout with a bad token is 403 bad_jwt", badJwt?.status === 403 && badJwt?.code === "bad_jwt", badJwt);

  for (const [status, errorCode] of [[401, "no_authorization"], [403, "session_not_found"], [404, "user_not_found"]]) {
    const c = await signedIn("gina");
    await control(`/__test/logout-answer?status=${status}&code=${errorCode}`);
    const { error } = await c.client.signOut({ scope: "local" });
    check(`auth-js's signOut takes a ${status} ${errorCode} for "already signed out"`, !error, error);
  }
  const c = await signedIn("gina");
  await control("/__test/logout-answer?status=500&code=unexpected_failure");
  const { error: failed } = await c.client.signOut({ scope: "local" });
  check("but not a 500 (an error to retry)", failed?.name === "AuthRetryableFetchError" && failed?.status === 500, failed);

  const g1 = await signedIn("hana");
  const g2 = await signedIn("hana");
  const other = await signedIn("ivan");
  const { error: globalError } = await g1.client.signOut({ scope: "global" });
  const scopes = (await calls("logout")).filter((l) => l.ok).map((l) => l.scope);
  check("signOut (global) succeeds, as /logout?scope=global", !globalError && scopes.at(-1) === "global", { globalError, scopes });
  const { error: g2Gone } = await g2.client.getUser(g2.session.access_token);
  const { error: g2Refresh } = await client().refreshSession({ refresh_token: g2.session.refresh_token });
  check("a global signOut ends every session of the user", g2Gone?.name === "AuthSessionMissingError" && g2Refresh?.status === 400, { g2Gone, g2Refresh });
  const { error: otherOk } = await other.client.getUser(other.session.access_token);
  check("and nobody else's", !otherOk, otherOk);
}

// --- After the reuse window: the older token is reuse, refused ---
const left = r0RevokedAt + reuseInterval * 1000 + 1000 - Date.now();
if (left > 0) await sleep(left);
const { error: reused } = await client().refreshSession({ refresh_token: r0 });
check(`an older revoked token after the reuse interval (${reuseInterval} s) is refused with refresh_token_already_used`,
  reused?.code === "refresh_token_already_used" && reused?.status === 400, reused);

console.log(`gotrue double: faithful (${mode}, reuse interval ${reuseInterval} s)`);
