// Passkeys in real Chromium with a CDP virtual authenticator (ctap2,
// internal, resident keys, user verification): a password sign-in, a
// passkey added on the account page and renamed, a passkey sign-in through
// the unmodified web client (the button, then the email field's autofill:
// conditional mediation), a passkey-only sign-up; then what must be
// refused: a challenge answered twice, an answer with an old sign counter,
// an answer made on another origin, another account's key, and the removed
// passkey.
// Run by tests/api/browser_e2e.rs, which starts the server and passes:
//   CHRONOS_URL, FRONTEND_PORT, EMAIL, PASSWORD (as signin.mjs)
import crypto from "node:crypto";
import { callbackStatus, launchChromium, serveWebClient } from "./webclient.mjs";

const api = process.env.CHRONOS_URL;
const port = Number(process.env.FRONTEND_PORT);
const email = process.env.EMAIL;
const password = process.env.PASSWORD;
const frontend = `http://localhost:${port}`;

const server = await serveWebClient(api, port);
const browser = await launchChromium();
const step = (message) => console.log("browser: " + message);
const expect = (ok, message) => { if (!ok) throw new Error(message); };
let failed = false;

// The sign-in page's own calls, made from here: a flow of our own (any
// S256 challenge; the redirect target is the allow-listed callback).
const flow = {
  redirect_uri: `${frontend}/auth/web/callback`,
  code_challenge: "passkey-test-challenge-0123456789abcdefghij".slice(0, 43),
  code_challenge_method: "S256",
};
async function call(path, body) {
  const r = await fetch(api + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Origin: new URL(api).origin },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json().catch(() => ({})) };
}
// The browser answers a challenge on whatever page `tab` shows.
const answer = (tab, options) => tab.evaluate(async (publicKey) => {
  const bytes = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - s.length % 4) % 4)), (c) => c.charCodeAt(0)).buffer;
  publicKey.challenge = bytes(publicKey.challenge);
  const credential = await navigator.credentials.get({ publicKey });
  return credential.toJSON();
}, options.publicKey);
const begin = async () => {
  const begun = await call("/auth/signin/passkey/options", flow);
  expect(begun.status === 200, "options: " + JSON.stringify(begun));
  return begun.body;
};
// RFC 6238 (SHA-1, 6 digits, 30 s), for the account's second step.
const totp = (base32, unix) => {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of base32.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unix / 30)));
  const mac = crypto.createHmac("sha1", key).update(counter).digest();
  const offset = mac[19] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, "0");
};
const finish = (begun, credential) =>
  call("/auth/signin/passkey", { ...flow, ceremonyId: begun.ceremonyId, credential });

try {
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on("console", (m) => step("console: " + m.text()));
  const cdp = await context.newCDPSession(tab);
  await cdp.send("WebAuthn.enable");
  const authenticatorOptions = {
    protocol: "ctap2", transport: "internal", hasResidentKey: true,
    hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
  };
  let { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", { options: authenticatorOptions });

  const startLogin = async () => {
    await tab.goto(`${frontend}/`);
    await tab.waitForFunction(() => document.getElementById("status").textContent === "ready");
    await tab.evaluate(() => { window.startLogin(); });
    await tab.waitForURL(new RegExp("^" + api + "/auth/signin\\?"));
  };
  // The password posted on the sign-in page.
  const submitPassword = async () => {
    await startLogin();
    await tab.fill("#email", email);
    await tab.fill("#password", password);
    return tab.click("#signin button[type=submit]");
  };
  const signInWithPassword = async () => {
    await Promise.all([
      tab.waitForURL(new RegExp(`^${frontend}/auth/web/callback\\?code=`)),
      submitPassword(),
    ]);
    return callbackStatus(tab);
  };
  const logout = async () => {
    const out = await tab.evaluate(() => window.logout());
    expect(out === "200 Logged out", "logout: " + out);
  };
  const rows = () => tab.$$eval("#passkeys tbody tr", (trs) => trs.map((tr) => tr.children[0].textContent));

  // 1. Password, then a passkey added and renamed on the account page.
  let status = await signInWithPassword();
  expect(status.startsWith("signed in as " + email), status);
  step("password sign-in: " + status.replace(/ in \d+ ms$/, ""));
  await tab.goto(`${api}/auth/account`);
  await tab.waitForSelector("#add-passkey");
  await tab.fill("#passkey-name", "Laptop");
  await tab.click("#add-passkey");
  await tab.waitForFunction(() => document.body.dataset.added === "1");
  await tab.waitForFunction(() => document.querySelectorAll("#passkeys tbody tr").length === 1);
  step("account page lists: " + (await rows()).join(", "));
  tab.once("dialog", (d) => d.accept("Work laptop"));
  await tab.click("#passkeys .rename");
  await tab.waitForFunction(() => document.querySelector("#passkeys tbody td")?.textContent === "Work laptop");
  step("renamed: " + (await rows()).join(", "));
  const credentials = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;
  expect(credentials.length === 1 && credentials[0].isResidentCredential, "not one resident key");
  step("the authenticator holds 1 resident key for " + credentials[0].rpId);
  // Two-step sign-in on too: a passkey, verified, still needs no second step.
  await tab.click("#totp-enrol");
  await tab.waitForSelector("#totp-secret");
  const secret = await tab.textContent("#totp-secret");
  await tab.fill("#totp-code", totp(secret, Date.now() / 1000));
  await tab.click("#totp-action");
  await tab.waitForSelector("#recovery-codes li");
  const recovery = await tab.$$eval("#recovery-codes li", (lis) => lis.map((li) => li.textContent));
  step(`two-step sign-in on, ${recovery.length} recovery codes`);
  await tab.goto(`${frontend}/`);
  await logout();

  // 2. Conditional mediation: the sign-in page asks for a passkey for the
  // email field's autofill as it loads; the virtual authenticator, with
  // one key for this site, answers it without a click.
  const optionsAsked = [];
  tab.on("request", (r) => {
    if (r.url().endsWith("/auth/signin/passkey/options")) optionsAsked.push(JSON.parse(r.postData()).conditional);
  });
  await tab.goto(`${frontend}/`);
  await tab.waitForFunction(() => document.getElementById("status").textContent === "ready");
  await Promise.all([
    tab.waitForURL(new RegExp(`^${frontend}/auth/web/callback\\?code=`)),
    tab.evaluate(() => { window.startLogin(); }),
  ]);
  status = await callbackStatus(tab);
  expect(status.startsWith("signed in as " + email), status);
  expect(optionsAsked.length === 1 && optionsAsked[0] === true, "options asked: " + optionsAsked);
  step("passkey from the email field's autofill (conditional mediation): " + status.replace(/ in \d+ ms$/, ""));
  await logout();

  // 3. The passkey button, in a browser without conditional mediation
  // (so from here on the page asks only when told to).
  await tab.addInitScript(() => {
    if (window.PublicKeyCredential) PublicKeyCredential.isConditionalMediationAvailable = async () => false;
  });
  await startLogin();
  await Promise.all([
    tab.waitForURL(new RegExp(`^${frontend}/auth/web/callback\\?code=`)),
    tab.click("#passkey"),
  ]);
  status = await callbackStatus(tab);
  expect(status.startsWith("signed in as " + email), status);
  expect(optionsAsked.length === 2 && optionsAsked[1] === false, "options asked: " + optionsAsked);
  step("passkey button: " + status.replace(/ in \d+ ms$/, ""));
  await logout();

  // 4. A passkey-only account (sign-up with a passkey).
  const other = "passkey-only@example.com";
  await startLogin();
  await tab.click("details summary");
  await tab.fill("#signup-email", other);
  await Promise.all([
    tab.waitForURL(new RegExp(`^${frontend}/auth/web/callback\\?code=`)),
    tab.click("#signup-passkey"),
  ]);
  status = await callbackStatus(tab);
  expect(status.startsWith("signed in as " + other), status);
  step("passkey-only sign-up: " + status.replace(/ in \d+ ms$/, ""));
  const otherId = await tab.evaluate(async () =>
    (await (await fetch(API + "/auth/session", { credentials: "include" })).json()).user.id);
  await logout();

  // 5. Refusals. The sign-in page is the relying party's origin.
  await tab.goto(`${api}/auth/signin?` + new URLSearchParams(flow));
  await tab.waitForSelector("#passkey");
  // A challenge answered twice.
  let begun = await begin();
  let credential = await answer(tab, begun.options);
  let first = await finish(begun, credential);
  let again = await finish(begun, credential);
  expect(first.status === 200 && again.status === 401, `reuse: ${first.status} then ${again.status} ${again.body.detail}`);
  step(`a challenge answered twice: ${first.status}, then ${again.status} ${again.body.detail}`);
  // An old sign counter: two answers made in order, the later sent first.
  const older = await begin();
  const newer = await begin();
  const olderAnswer = await answer(tab, older.options);
  const newerAnswer = await answer(tab, newer.options);
  first = await finish(newer, newerAnswer);
  again = await finish(older, olderAnswer);
  expect(first.status === 200 && again.status === 401, `counter: ${first.status} then ${again.status}`);
  step(`an answer with an older sign counter: ${again.status} ${again.body.detail}`);
  // Made on another origin (the app's page, same host, other port).
  await tab.goto(`${frontend}/`);
  begun = await begin();
  credential = await answer(tab, begun.options);
  let refused = await finish(begun, credential);
  expect(refused.status === 401, "another origin: " + refused.status);
  step(`an answer made on ${frontend}: ${refused.status} ${refused.body.detail}`);
  // Another account's key: the passkey-only account's key, presented with
  // the first account's user handle.
  const held = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;
  const handleOf = (id) => Buffer.from(id.replace(/-/g, ""), "hex").toString("base64");
  const mine = held.find((c) => c.userHandle !== handleOf(otherId));
  const theirs = held.find((c) => c.userHandle === handleOf(otherId));
  expect(mine && theirs, "expected both accounts' keys in the authenticator");
  await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId });
  ({ authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", { options: authenticatorOptions }));
  await cdp.send("WebAuthn.addCredential", { authenticatorId, credential: { ...theirs, userHandle: mine.userHandle } });
  await tab.goto(`${api}/auth/signin?` + new URLSearchParams(flow));
  begun = await begin();
  credential = await answer(tab, begun.options);
  refused = await finish(begun, credential);
  expect(refused.status === 401, "another account's key: " + refused.status);
  step(`another account's key with this account's handle: ${refused.status} ${refused.body.detail}`);
  await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId });
  ({ authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", { options: authenticatorOptions }));
  await cdp.send("WebAuthn.addCredential", { authenticatorId, credential: mine });

  // 6. The passkey removed on the account page: sign-in refused. (The
  // password needs its second step: a recovery code.)
  await submitPassword();
  await tab.waitForSelector("#second-step");
  step("the password asks for the second step");
  await tab.fill("#code", recovery[0]);
  await Promise.all([
    tab.waitForURL(new RegExp(`^${frontend}/auth/web/callback\\?code=`)),
    tab.click("#second-step button[type=submit]"),
  ]);
  status = await callbackStatus(tab);
  expect(status.startsWith("signed in as " + email), status);
  await tab.goto(`${api}/auth/account`);
  await tab.waitForFunction(() => document.querySelectorAll("#passkeys tbody tr").length === 1);
  await tab.click("#passkeys .remove");
  await tab.waitForFunction(() => document.querySelectorAll("#passkeys tbody tr").length === 0);
  step("removed on the account page");
  await tab.goto(`${frontend}/`);
  await logout();
  await startLogin();
  await tab.click("#passkey");
  await tab.waitForFunction(() => !document.getElementById("passkey-error").hidden);
  step("the removed passkey: " + (await tab.textContent("#passkey-error")));
  expect(tab.url().startsWith(api + "/auth/signin"), "still on the sign-in page");
} catch (error) {
  failed = true;
  console.error("browser: FAILED: " + error.message);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
