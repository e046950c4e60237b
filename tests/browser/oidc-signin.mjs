// A real browser signs in through a real OpenID provider (npm
// oidc-provider, started by the Rust test) via Chronos, reloads, refreshes
// and logs out; the provider's introspection then shows the refresh token
// Chronos held revoked. Then it signs in again and logs out at the
// provider, whose back-channel logout must end the Chronos session: the
// copied cookies are refused within a second. Last, RP-initiated logout
// through Chronos (GET /auth/logout/provider): the provider's session ends
// too, and its login page asks again.
//
// Run by tests/api/oidc_provider.rs, which passes:
//   CHRONOS_URL     the server, e.g. http://localhost:8000
//   FRONTEND_PORT   where this script serves a minimal web client
//   OP_URL          the provider's issuer
//   OP_SECRET       the client secret (for introspection)
//   CHROMIUM        the browser binary (default /usr/bin/chromium)
import { callbackStatus, launchChromium, serveWebClient } from "./webclient.mjs";

const api = process.env.CHRONOS_URL;
const port = Number(process.env.FRONTEND_PORT);
const op = process.env.OP_URL;
const secret = process.env.OP_SECRET;

const server = await serveWebClient(api, port);
const browser = await launchChromium();

const step = (message) => console.log("browser: " + message);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const introspect = async (token) => {
  const r = await fetch(op + "/token/introspection", {
    method: "POST",
    headers: {
      "Content-Type": "application/x-www-form-urlencoded",
      Authorization: "Basic " + Buffer.from("chronos:" + encodeURIComponent(secret).replace(/%20/g, "+")).toString("base64"),
    },
    body: new URLSearchParams({ token, token_type_hint: "refresh_token" }),
  });
  return (await r.json()).active;
};
const issuedRefreshTokens = async () => (await (await fetch(op + "/__test/refresh-tokens")).json());

/// Front page → provider login → consent → back with a code → signed in.
async function signIn(tab, login) {
  await tab.goto(`http://localhost:${port}/`);
  await tab.waitForFunction(() => document.getElementById("status").textContent === "ready");
  // Not awaited inside the page: it navigates away, and a result awaited
  // across that navigation fails ("execution context was destroyed").
  await tab.evaluate(() => { window.startLogin(); });
  await tab.waitForURL(new RegExp("^" + op + "/interaction/"));
  if (await tab.locator("input[name=login]").count()) {
    step("on the provider's login page");
    await tab.fill("input[name=login]", login);
    await tab.fill("input[name=password]", "any password");
    await tab.click("button[type=submit]");
    await tab.waitForURL(new RegExp("^" + op + "/interaction/"));
  }
  step("on the provider's consent page");
  await Promise.all([
    tab.waitForURL(new RegExp(`^http://localhost:${port}/auth/web/callback\\?code=`)),
    tab.click("button[type=submit]"),
  ]);
  const status = await callbackStatus(tab);
  step(status);
  if (!status.startsWith("signed in as " + login + "@example.com")) throw new Error("sign-in failed: " + status);
}

let failed = false;
try {
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on("console", (m) => step("console: " + m.text()));

  await signIn(tab, "ann");
  const names = (await context.cookies(api)).map((c) => c.name).sort();
  step("cookies: " + names.join(", "));
  const [token] = (await issuedRefreshTokens()).slice(-1);
  if (!token) throw new Error("the provider issued no refresh token");
  step("provider refresh token active before logout: " + (await introspect(token)));

  await tab.goto(`http://localhost:${port}/`);
  step("after reload, session " + (await tab.evaluate(() => window.session())));
  step("refresh " + (await tab.evaluate(() => window.refresh())));
  step("after refresh, session " + (await tab.evaluate(() => window.session())));
  step("logout " + (await tab.evaluate(() => window.logout())));
  step("after logout, session " + (await tab.evaluate(() => window.session())));
  let active = true;
  for (let i = 0; i < 100 && active; i++) {
    active = await introspect(token);
    if (active) await sleep(100);
  }
  step("provider refresh token active after logout: " + active);

  // Again, then log out at the provider: its back-channel logout ends
  // our session; the cookies, copied beforehand, stop working.
  await signIn(tab, "ann");
  const cookies = await context.cookies(api);
  const header = cookies.map((c) => `${c.name}=${c.value}`).join("; ");
  const csrfToken = cookies.find((c) => c.name === "chronos_csrf").value;
  const copied = async () => {
    const statuses = [];
    for (const [method, path] of [["GET", "/auth/session"], ["GET", "/auth/verify"], ["POST", "/auth/refresh"]]) {
      const r = await fetch(api + path, { method, headers: { Cookie: header, "X-CSRF-Token": csrfToken } });
      statuses.push(r.status);
    }
    return statuses.join(",");
  };
  step("copied cookies before the provider logout: " + (await copied()));
  await tab.goto(op + "/session/end?client_id=chronos");
  const started = Date.now();
  await tab.click("button[value=yes]");
  let seen = await copied();
  while (seen !== "401,401,401" && Date.now() - started < 5000) {
    await sleep(20);
    seen = await copied();
  }
  step(`copied cookies after the provider logout: ${seen} within ${Date.now() - started} ms`);

  // RP-initiated logout through Chronos: sign in again (the provider asks
  // for the login, its session having ended), then GET
  // /auth/logout/provider. The session ends here, the provider confirms
  // its own end, and the browser lands on the allow-listed page.
  await signIn(tab, "ann");
  await tab.goto(api + "/auth/logout/provider");
  await tab.waitForURL(new RegExp("^" + op + "/session/end"));
  const asked = new URL(tab.url());
  step("at the provider's end_session_endpoint with id_token_hint: " +
    (asked.searchParams.get("id_token_hint") ? "yes" : "no"));
  await Promise.all([
    tab.waitForURL(new RegExp(`^http://localhost:${port}/login`)),
    tab.click("button[value=yes]"),
  ]);
  step("after RP-initiated logout, landed on " + new URL(tab.url()).pathname);
  await tab.goto(`http://localhost:${port}/`);
  step("after RP-initiated logout, session " + (await tab.evaluate(() => window.session())));
  await tab.waitForFunction(() => document.getElementById("status").textContent === "ready");
  await tab.evaluate(() => { window.startLogin(); });
  await tab.waitForURL(new RegExp("^" + op + "/interaction/"));
  step("after RP-initiated logout, the provider asks to sign in: " +
    ((await tab.locator("input[name=login]").count()) ? "yes" : "no"));
  const events = await (await fetch(op + "/__test/events")).json();
  step("provider events: " + events.map((e) => e.event + (e.message ? "(" + e.message + ")" : "")).join(", "));
} catch (error) {
  failed = true;
  console.error("browser: FAILED: " + error.message);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
