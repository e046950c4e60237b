// The web client in real Chromium against Chronos with DBSC=on: it signs
// in, refreshes and logs out exactly as without DBSC. What the browser
// does with the registration offer is reported, not assumed:
//   DBSC_FEATURES=1 launches Chromium with DBSC and its software keys for
//   manual testing (no TPM here); the script then reports whether the
//   browser registered and what it sent. (Debian's Chromium 156, headless,
//   made no registration with these features, over http://localhost or
//   https through a TLS proxy, in an incognito or a persistent profile:
//   the suite runs it without them, as the compatibility test.)
// Run by tests/api/browser_e2e.rs, which starts the server and passes:
//   CHRONOS_URL, FRONTEND_PORT, EMAIL, PASSWORD (as signin.mjs)
import { callbackStatus, launchChromium, serveWebClient } from "./webclient.mjs";

const api = process.env.CHRONOS_URL;
const port = Number(process.env.FRONTEND_PORT);
const email = process.env.EMAIL;
const password = process.env.PASSWORD;
const features = process.env.DBSC_FEATURES === "1";

const server = await serveWebClient(api, port);
const browser = await launchChromium(
  features
    ? ["--enable-features=DeviceBoundSessions:RequireOriginTrialTokens/false,EnableBoundSessionCredentialsSoftwareKeysForManualTesting"]
    : [],
);

const step = (message) => console.log("browser: " + message);
let failed = false;
try {
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on("console", (m) => step("console: " + m.text()));
  let offered = 0;
  tab.on("response", (r) => {
    if (r.headers()["secure-session-registration"]) offered += 1;
  });
  const dbscCalls = [];
  context.on("request", (r) => {
    if (r.url().includes("/auth/dbsc/")) dbscCalls.push(r.method() + " " + new URL(r.url()).pathname);
  });

  await tab.goto(`http://localhost:${port}/`);
  await tab.waitForFunction(() => document.getElementById("status").textContent === "ready");
  await tab.evaluate(() => { window.startLogin(); });
  await tab.waitForURL(new RegExp("^" + api + "/auth/signin\\?"));
  await tab.fill("#email", email);
  await tab.fill("#password", password);
  await Promise.all([
    tab.waitForURL(new RegExp(`^http://localhost:${port}/auth/web/callback\\?code=`)),
    tab.click("#signin button[type=submit]"),
  ]);
  const signedIn = await callbackStatus(tab);
  step(signedIn);
  if (!signedIn.startsWith("signed in as " + email)) throw new Error("sign-in failed: " + signedIn);
  step("registration offered: " + (offered > 0 ? "yes" : "no"));
  step("session " + (await tab.evaluate(() => window.session())));
  step("refresh " + (await tab.evaluate(() => window.refresh())));
  step("after refresh, session " + (await tab.evaluate(() => window.session())));
  // Give a browser that registers time to do it, then report.
  await tab.waitForTimeout(features ? 3000 : 200);
  const names = (await context.cookies(api)).map((c) => c.name).sort();
  step("cookies: " + names.join(", "));
  step("dbsc calls: " + (dbscCalls.length ? dbscCalls.join(", ") : "none"));
  step("logout " + (await tab.evaluate(() => window.logout())));
  step("after logout, session " + (await tab.evaluate(() => window.session())));
  const left = (await context.cookies(api)).map((c) => c.name).filter((n) => n.startsWith("chronos_"));
  step("cookies left: " + (left.length ? left.join(", ") : "none"));
} catch (error) {
  failed = true;
  console.error("browser: FAILED: " + error.message);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
