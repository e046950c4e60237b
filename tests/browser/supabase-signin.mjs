// Real browsers sign in through Chronos with Supabase Auth (the GoTrue test
// server, started by the Rust test): two browsers start overlapping
// sign-ins and both finish (each flow keeps its own PKCE verifier); then
// one reloads, refreshes and logs out, and the other stays signed in.
//
// Run by tests/api/supabase_browser.rs, which passes:
//   CHRONOS_URL     the server, e.g. http://localhost:8000
//   FRONTEND_PORT   where this script serves a minimal web client
//   GOTRUE_URL      the test server's project URL
import { callbackStatus, launchChromium, serveWebClient } from "./webclient.mjs";

const api = process.env.CHRONOS_URL;
const port = Number(process.env.FRONTEND_PORT);
const gotrue = process.env.GOTRUE_URL;

const server = await serveWebClient(api, port);
const browser = await launchChromium();
const step = (message) => console.log("browser: " + message);

/// Home → Supabase's /authorize → "Google" consent page (not submitted yet).
async function startSignIn(tab) {
  await tab.goto(`http://localhost:${port}/`);
  await tab.waitForFunction(() => document.getElementById("status").textContent === "ready");
  // Not awaited inside the page: it navigates away (see signin.mjs).
  await tab.evaluate(() => { window.startLogin(); });
  await tab.waitForURL(new RegExp("^" + gotrue + "/__google/consent"));
}

async function consent(tab, login) {
  await tab.fill("input[name=login]", login);
  await Promise.all([
    tab.waitForURL(new RegExp(`^http://localhost:${port}/auth/web/callback\\?code=`)),
    tab.click("button[type=submit]"),
  ]);
  return callbackStatus(tab);
}

let failed = false;
try {
  const annContext = await browser.newContext();
  const bobContext = await browser.newContext();
  const ann = await annContext.newPage();
  const bob = await bobContext.newPage();
  await startSignIn(ann);
  step("ann is on the consent page");
  await startSignIn(bob);
  step("bob is on the consent page too");
  step("bob: " + (await consent(bob, "bob")));
  step("ann: " + (await consent(ann, "ann")));

  await ann.goto(`http://localhost:${port}/`);
  step("after reload, ann's session " + (await ann.evaluate(() => window.session())));
  step("ann's refresh " + (await ann.evaluate(() => window.refresh())));
  step("after refresh, ann's session " + (await ann.evaluate(() => window.session())));
  step("ann's logout " + (await ann.evaluate(() => window.logout())));
  step("after logout, ann's session " + (await ann.evaluate(() => window.session())));
  await bob.goto(`http://localhost:${port}/`);
  step("bob's session " + (await bob.evaluate(() => window.session())));
} catch (error) {
  failed = true;
  console.error("browser: FAILED: " + error.message);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
