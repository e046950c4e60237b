// Proves the GoTrue test server (gotrue-double.mjs) faithful to Supabase
// Auth's wire contract as the official client sees it: @supabase/auth-js
// signs in with PKCE, reads the user, refreshes (and is refused a reused
// token with Supabase's error code), and signs out. Run by
// tests/api/supabase.rs with GOTRUE_URL (…/auth/v1) and APIKEY; prints one
// "ok: ..." line per check, and exits non-zero on the first failure.
import { GoTrueClient } from "@supabase/auth-js";

const url = process.env.GOTRUE_URL;
const apikey = process.env.APIKEY;
const redirectTo = "http://localhost:5173/auth/web/callback";

// auth-js keeps the PKCE verifier in its storage: a visible one here.
const storage = () => {
  const items = new Map();
  return {
    items,
    getItem: (k) => items.get(k) ?? null,
    setItem: (k, v) => items.set(k, v),
    removeItem: (k) => items.delete(k),
  };
};
const client = (store = storage()) =>
  new GoTrueClient({ url, headers: { apikey }, flowType: "pkce", persistSession: true, storage: store, autoRefreshToken: false });

const check = (what, condition, detail) => {
  if (!condition) {
    console.error(`FAILED: ${what}: ${JSON.stringify(detail)}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
};

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

const storeA = storage();
const a = client(storeA);
const { data: start } = await a.signInWithOAuth({ provider: "google", options: { redirectTo, skipBrowserRedirect: true } });
const authorizeUrl = new URL(start.url);
check("signInWithOAuth builds /authorize with PKCE",
  authorizeUrl.searchParams.get("code_challenge_method") === "s256" && authorizeUrl.searchParams.get("code_challenge"),
  start.url);
const code = await authorize(start.url, "ann");
const verifier = JSON.parse([...storeA.items].find(([k]) => k.endsWith("-code-verifier"))[1]).split("/")[0];
const { data: signedIn, error: exchangeError } = await a.exchangeCodeForSession(code);
check("exchangeCodeForSession answers a session", !exchangeError && signedIn.session?.access_token && signedIn.session?.refresh_token, exchangeError);
check("the session's user is the one who consented", signedIn.user?.email === "ann@example.com", signedIn.user);
const again = await fetch(`${url}/token?grant_type=pkce`, {
  method: "POST", headers: { apikey, "Content-Type": "application/json", "X-Supabase-Api-Version": "2024-01-01" },
  body: JSON.stringify({ auth_code: code, code_verifier: verifier }),
});
const againBody = await again.json();
check("a code works once (404 flow_state_not_found)", again.status === 404 && againBody.code === "flow_state_not_found", againBody);

const { data: who, error: userError } = await a.getUser(signedIn.session.access_token);
check("getUser reads the user with the access token", !userError && who.user.id === signedIn.user.id, userError);

const first = signedIn.session.refresh_token;
const { data: r1, error: e1 } = await a.refreshSession({ refresh_token: first });
check("refreshSession rotates the refresh token", !e1 && r1.session.refresh_token !== first, e1);
const { data: r2, error: e2 } = await a.refreshSession({ refresh_token: first });
check("the parent of the current token returns the current one", !e2 && r2.session.refresh_token === r1.session.refresh_token, e2);
const { data: r3, error: e3 } = await a.refreshSession({ refresh_token: r1.session.refresh_token });
check("the current token rotates again", !e3 && r3.session.refresh_token !== r1.session.refresh_token, e3);
// `first` is now a grandparent, revoked more than REUSE_INTERVAL ago (0 here).
const { error: reused } = await a.refreshSession({ refresh_token: first });
check("a reused token is refused with refresh_token_already_used", reused?.code === "refresh_token_already_used" && reused?.status === 400, reused);
const { error: familyGone } = await a.refreshSession({ refresh_token: r3.session.refresh_token });
check("and the whole family with it", familyGone?.code === "refresh_token_not_found" || familyGone?.code === "session_not_found", familyGone);
const { error: unknown } = await a.refreshSession({ refresh_token: "not-a-token-we-issued" });
check("an unknown refresh token is refresh_token_not_found", unknown?.code === "refresh_token_not_found", unknown);

// A fresh session to sign out of.
const b = client();
const { data: startB } = await b.signInWithOAuth({ provider: "google", options: { redirectTo, skipBrowserRedirect: true } });
const { data: sessionB } = await b.exchangeCodeForSession(await authorize(startB.url, "bob"));
const { error: signOutError } = await b.signOut({ scope: "local" });
check("signOut (local) succeeds", !signOutError, signOutError);
const { error: afterSignOut } = await b.getUser(sessionB.session.access_token);
// auth-js turns GoTrue's session_not_found into AuthSessionMissingError.
check("after signOut the session is gone (session_not_found)", afterSignOut?.name === "AuthSessionMissingError", afterSignOut);
// Signing out again: 403 session_not_found on the wire, which auth-js treats as success.
const again2 = await fetch(`${url}/logout?scope=local`, {
  method: "POST", headers: { apikey, Authorization: `Bearer ${sessionB.session.access_token}`, "X-Supabase-Api-Version": "2024-01-01" },
});
const body = await again2.json();
check("a second logout is 403 session_not_found in the 2024-01-01 shape",
  again2.status === 403 && body.code === "session_not_found" && again2.headers.get("x-supabase-api-version") === "2024-01-01", body);
const noToken = await fetch(`${url}/logout`, { method: "POST", headers: { apikey } });
const noTokenBody = await noToken.json();
check("logout without a token is 401 no_authorization (unversioned shape)",
  noToken.status === 401 && noTokenBody.error_code === "no_authorization" && noTokenBody.code === 401, noTokenBody);
console.log("gotrue double: faithful");
