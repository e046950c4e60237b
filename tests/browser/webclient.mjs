// The web client the browser tests serve, reduced to what the API contract
// asks of it (the same calls the upstream client makes: credentials
// included, the CSRF token read from its cookie and echoed on POSTs), and
// a headless Chromium to run it in.
import http from "node:http";
import { chromium } from "playwright-core";

const page = (api, title, script) => `<!doctype html><meta charset="utf-8"><title>${title}</title>
<body><h1>${title}</h1><p id="status">working</p>
<script>const API = ${JSON.stringify(api)};
const csrf = () => (document.cookie.split("; ").find((c) => c.startsWith("chronos_csrf=")) || "=").split("=")[1];
window.session = async () => {
  const r = await fetch(API + "/auth/session", { credentials: "include" });
  return r.status + " " + (r.ok ? (await r.json()).user.email : "");
};
window.refresh = async () => {
  await fetch(API + "/auth/csrf", { credentials: "include" });
  const r = await fetch(API + "/auth/refresh", { method: "POST", credentials: "include",
    headers: { "X-CSRF-Token": csrf() } });
  return String(r.status);
};
window.logout = async () => {
  const r = await fetch(API + "/auth/logout", { method: "POST", credentials: "include",
    headers: { "X-CSRF-Token": csrf() } });
  return r.status + " " + (await r.json()).message;
};
// The calendar sync as hooks/useCalendarSync.ts makes it: a GET with the
// CSRF header, the body read with getReader() and split into server-sent
// events on blank lines; each event's name, data and arrival (ms).
window.sync = async (calendarIds) => {
  const started = performance.now();
  const params = new URLSearchParams({ calendar_ids: calendarIds.join(",") });
  const response = await fetch(API + "/calendar/sync?" + params.toString(), {
    credentials: "include", headers: { "X-CSRF-Token": csrf() },
  });
  if (!response.ok) return { status: response.status, events: [] };
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const events = [];
  let buffer = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let boundary = buffer.indexOf("\\n\\n");
    while (boundary !== -1) {
      const block = buffer.slice(0, boundary).replace(/\\r/g, "").trim();
      buffer = buffer.slice(boundary + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      events.push({ name, data: JSON.parse(data.join("\\n")), at: Math.round(performance.now() - started) });
      boundary = buffer.indexOf("\\n\\n");
    }
  }
  return { status: response.status, events };
};
window.startLogin = async () => {
  const r = await fetch(API + "/auth/google/login", { credentials: "include" });
  window.location.href = (await r.json()).redirectUrl;
};
${script}</script>`;

/// Serves the home page and the callback page on `port`; the callback posts
/// the code and shows "signed in as <email> in <ms> ms".
export async function serveWebClient(api, port) {
  const home = page(api, "Chronos", `document.getElementById("status").textContent = "ready";`);
  const callback = page(api, "Callback", `
  (async () => {
    const code = new URLSearchParams(location.search).get("code");
    const started = performance.now();
    const r = await fetch(API + "/auth/web/callback", {
      method: "POST", credentials: "include",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ code }),
    });
    const took = Math.round(performance.now() - started);
    const body = await r.json();
    document.getElementById("status").textContent =
      r.ok ? "signed in as " + body.user.email + " in " + took + " ms" : "failed: " + body.detail;
  })();
`);
  const server = http.createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const html = path === "/auth/web/callback" ? callback : path === "/" ? home : null;
    res.writeHead(html ? 200 : 404, { "Content-Type": "text/html; charset=utf-8" });
    res.end(html ?? "not found");
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return server;
}

export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ...extraArgs,
    ],
  });
}

/// Waits for the callback page to finish; its status line.
export async function callbackStatus(tab) {
  await tab.waitForFunction(() => document.getElementById("status").textContent !== "working");
  return tab.textContent("#status");
}
