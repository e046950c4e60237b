// A real browser signs in through the embedded sign-in page and logs out.
//
// Run by tests/api/browser_e2e.rs, which starts the server and passes:
//   CHRONOS_URL    the server, e.g. http://localhost:8000
//   FRONTEND_PORT  where this script serves a minimal web client
//   EMAIL, PASSWORD an account that exists
//   CHROMIUM       the browser binary (default /usr/bin/chromium)
import http from "node:http";
import { launchChromium } from "./webclient.mjs";

const api = process.env.CHRONOS_URL;
const port = Number(process.env.FRONTEND_PORT);
const email = process.env.EMAIL;
const password = process.env.PASSWORD;

// The web client, reduced to what the API contract asks of it: fetch with
// credentials, the code back to /auth/web/callback, logout as the seed page
// shows it.
const page = (title, script) => `<!doctype html><meta charset="utf-8"><title>${title}</title>
<body><h1>${title}</h1><p id="status">working</p><button id="logout" hidden>Log out</button>
<script>const API = ${JSON.stringify(api)};\n${script}</script>`;

const home = page("Chronos", `
  document.getElementById("status").textContent = "ready";
  window.startLogin = async () => {
    const r = await fetch(API + "/auth/google/login", { credentials: "include" });
    const { redirectUrl } = await r.json();
    window.location.href = redirectUrl;
  };
`);

const callback = page("Callback", `
  (async () => {
    const code = new URLSearchParams(location.search).get("code");
    const r = await fetch(API + "/auth/web/callback", {
      method: "POST", credentials: "include",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ code }),
    });
    const body = await r.json();
    document.getElementById("status").textContent =
      r.ok ? "signed in as " + body.user.email : "failed: " + body.detail;
    document.getElementById("logout").hidden = !r.ok;
  })();
  document.getElementById("logout").onclick = async () => {
    const r = await fetch(API + "/auth/logout", { method: "POST", credentials: "include" });
    const body = await r.json();
    const check = await fetch(API + "/auth/session", { credentials: "include" });
    document.getElementById("status").textContent =
      "logout " + r.status + " " + body.message + "; session " + check.status;
  };
`);

const server = http.createServer((req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  const html = path === "/auth/web/callback" ? callback : path === "/" ? home : null;
  res.writeHead(html ? 200 : 404, { "Content-Type": "text/html; charset=utf-8" });
  res.end(html ?? "not found");
});
await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));

const browser = await launchChromium();

const step = (message) => console.log("browser: " + message);
let failed = false;
try {
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on("console", (m) => step("console: " + m.text()));

  await tab.goto(`http://localhost:${port}/`);
  await tab.waitForFunction(() => document.getElementById("status").textContent === "ready");
  step("frontend loaded");
  // Not awaited inside the page: it navigates away, and a result awaited
  // across that navigation fails ("execution context was destroyed").
  await tab.evaluate(() => { window.startLogin(); });
  await tab.waitForURL(new RegExp("^" + api + "/auth/signin\\?"));
  step("on the sign-in page: " + (await tab.title()));

  await tab.fill("#email", email);
  await tab.fill("#password", password);
  await Promise.all([
    tab.waitForURL(new RegExp(`^http://localhost:${port}/auth/web/callback\\?code=`)),
    tab.click("#signin button[type=submit]"),
  ]);
  step("redirected back with a code");
  await tab.waitForFunction(() => document.getElementById("status").textContent !== "working");
  const signedIn = await tab.textContent("#status");
  step(signedIn);
  if (signedIn !== "signed in as " + email) throw new Error("sign-in failed: " + signedIn);

  const names = (await context.cookies(api)).map((c) => c.name).sort();
  step("cookies: " + names.join(", "));
  const session = (await context.cookies(api)).find((c) => c.name === "chronos_session");
  if (!session || !session.httpOnly) throw new Error("no httpOnly session cookie");

  await tab.click("#logout");
  await tab.waitForFunction(() => document.getElementById("status").textContent.startsWith("logout"));
  const loggedOut = await tab.textContent("#status");
  step(loggedOut);
  if (loggedOut !== "logout 200 Logged out; session 401") throw new Error("logout failed: " + loggedOut);
  const left = (await context.cookies(api)).map((c) => c.name);
  if (left.some((n) => ["chronos_session", "chronos_refresh", "chronos_csrf"].includes(n))) {
    throw new Error("cookies left after logout: " + left.join(", "));
  }
  step("all cookies cleared");
} catch (error) {
  failed = true;
  console.error("browser: FAILED: " + error.message);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
