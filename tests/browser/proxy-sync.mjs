// The web client signs in, then runs its calendar sync through Chronos's
// proxy (PROXY_ROUTES): a streaming GET whose events the page must get one
// by one, as the upstream sends them, 200 ms apart.
//
// Run by tests/api/proxy.rs, which starts the upstream and Chronos and passes:
//   CHRONOS_URL    the API, e.g. http://localhost:8000
//   FRONTEND_PORT  where this script serves the web client
//   EMAIL, PASSWORD an account that exists
//   CHROMIUM       the browser binary (default /usr/bin/chromium)
import { callbackStatus, launchChromium, serveWebClient } from "./webclient.mjs";

const api = process.env.CHRONOS_URL;
const port = Number(process.env.FRONTEND_PORT);
const server = await serveWebClient(api, port);
const browser = await launchChromium();

const step = (message) => console.log("browser: " + message);
let failed = false;
try {
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on("console", (m) => step("console: " + m.text()));
  await tab.goto(`http://localhost:${port}/`);
  await tab.waitForFunction(() => document.getElementById("status").textContent === "ready");
  // Not awaited inside the page: it navigates away, and a result awaited
  // across that navigation fails ("execution context was destroyed").
  await tab.evaluate(() => { window.startLogin(); });
  await tab.waitForURL(new RegExp("^" + api + "/auth/signin\\?"));
  await tab.fill("#email", process.env.EMAIL);
  await tab.fill("#password", process.env.PASSWORD);
  await tab.click("#signin button[type=submit]");
  await tab.waitForURL(new RegExp(`^http://localhost:${port}/auth/web/callback\\?code=`));
  step(await callbackStatus(tab));

  const synced = await tab.evaluate(() => window.sync(["primary", "work"]));
  step("sync " + synced.status + ": " + synced.events.map((e) => `${e.name}@${e.at}`).join(" "));
  const names = synced.events.map((e) => e.name).join(",");
  if (names !== "events,sync_token,events,sync_token,complete") throw new Error("events: " + names);
  const gaps = synced.events.slice(1).map((e, i) => e.at - synced.events[i].at);
  if (gaps.some((gap) => gap < 120)) throw new Error("events arrived together: gaps " + gaps.join(","));
  step("events one by one, gaps " + gaps.join(",") + " ms");
  const complete = synced.events[4].data;
  step(`upstream saw bearer=${complete.bearer} our_cookies=${complete.our_cookies}`);

  // After logout the same call is refused here, as the client expects.
  await tab.evaluate(() => window.logout());
  const after = await tab.evaluate(() => window.sync(["primary"]));
  step("after logout sync " + after.status);
} catch (error) {
  failed = true;
  console.error("browser: FAILED: " + error.message);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
