// A real browser signs in to Chronos served under a path by a proxy that
// strips it, as the web client's own development setup does (Vite serves the
// client and forwards /api/* to Chronos without the /api).
//
// Run by tests/api/prefix.rs, which starts Chronos and nginx and passes:
//   CHRONOS_URL    the API as the browser sees it (PUBLIC_URL), e.g. http://localhost:5174/api
//   FRONTEND_URL   the web client as the browser sees it (the proxy's root)
//   FRONTEND_PORT  where this script serves the web client (behind the proxy)
//   EMAIL, PASSWORD an account that exists
//   CHROMIUM       the browser binary (default /usr/bin/chromium)
import { callbackStatus, launchChromium, serveWebClient } from "./webclient.mjs";

const api = process.env.CHRONOS_URL;
const frontend = process.env.FRONTEND_URL;
const port = Number(process.env.FRONTEND_PORT);
const email = process.env.EMAIL;
const password = process.env.PASSWORD;
const literally = (text) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

const server = await serveWebClient(api, port);
const browser = await launchChromium();

const step = (message) => console.log("browser: " + message);
let failed = false;
try {
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on("console", (m) => step("console: " + m.text()));

  await tab.goto(frontend + "/");
  await tab.waitForFunction(() => document.getElementById("status").textContent === "ready");
  step("frontend loaded");
  // Not awaited inside the page: it navigates away, and a result awaited
  // across that navigation fails ("execution context was destroyed").
  await tab.evaluate(() => { window.startLogin(); });
  await tab.waitForURL(new RegExp("^" + literally(api + "/auth/signin?")));
  step("on the sign-in page: " + (await tab.title()));
  step("the form posts to " + (await tab.getAttribute("#signin", "action")));

  await tab.fill("#email", email);
  await tab.fill("#password", password);
  const posted = tab.waitForResponse(
    (r) => r.request().method() === "POST" && r.request().isNavigationRequest(),
  );
  await tab.click("#signin button[type=submit]");
  const answer = await posted;
  step(`posted to ${answer.url()}: ${answer.status()}`);
  if (answer.status() !== 303) throw new Error("the form post was not answered with a redirect");
  await tab.waitForURL(new RegExp("^" + literally(frontend + "/auth/web/callback?code=")));
  step("redirected back with a code");
  const signedIn = await callbackStatus(tab);
  step(signedIn);
  if (!signedIn.startsWith("signed in as " + email)) throw new Error("sign-in failed: " + signedIn);
  step("session " + (await tab.evaluate(() => window.session())));
} catch (error) {
  failed = true;
  console.error("browser: FAILED: " + error.message);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
