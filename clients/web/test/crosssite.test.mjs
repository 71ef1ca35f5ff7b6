// The README's production layout in real Chromium: the app on https://app.example.test, the
// auth server on https://auth.example.test (same site, different origins), both over TLS with
// a certificate made here. One small HTTPS front (node) serves the app page and its API on
// app.example.test and proxies auth.example.test to the real gatehouse binary; Chromium maps
// *.example.test to 127.0.0.1. The app page loads the library with <script type=module> under
// a strict CSP and cannot read the auth host's __Host-csrf_token cookie.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { createServer } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  CI, countRefreshes, createUser, freePort, launchBrowser, sleep, startServer, uniqueEmail, watchConsole, webRoot,
} from "./helpers.mjs";

const LIB = join(webRoot, "dist", "gatehouse.js");

let certDir;
let tls = null;
let front;
let port;
let appOrigin;
let authOrigin;
let server;
let browser;
const apiCalls = []; // requests that reached the app's own API

/** A self-signed certificate for *.example.test, made with the machine's openssl. */
function makeCertificate() {
  certDir = mkdtempSync(join(tmpdir(), "gatehouse-tls-"));
  const key = join(certDir, "key.pem");
  const cert = join(certDir, "cert.pem");
  try {
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=example.test",
      "-addext", "subjectAltName=DNS:app.example.test,DNS:auth.example.test",
    ], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    if (CI) throw new Error(`openssl is needed for the TLS test: ${err.message}`);
    return null;
  }
  return { key: readFileSync(key), cert: readFileSync(cert) };
}

const appPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>App</title>
<script type="module" src="/main.js"></script></head>
<body><p id="who">loading</p></body></html>`;

// The app's own script: the library as an ES module, the auth server on another origin.
const mainJs = (auth) => `import { GatehouseClient } from "/gatehouse.js";
const opts = { baseUrl: ${JSON.stringify(auth)}, autoRefresh: new URLSearchParams(location.search).get("auto") !== "0" };
const gh = new GatehouseClient(opts);
window.events = [];
gh.on("login", () => window.events.push("login"));
gh.on("logout", (d) => window.events.push("logout:" + d.reason));
window.gh = gh;
window.ready = true;
`;

/** The HTTPS front: the app on app.example.test, a reverse proxy to gatehouse on auth.example.test. */
function startFront(gatehouseBase) {
  const upstream = new URL(gatehouseBase);
  const srv = createServer(tls, (req, res) => {
    const host = (req.headers.host ?? "").toLowerCase();
    if (host === `auth.example.test:${port}`) {
      // Forward as a reverse proxy would, Host included.
      const up = httpRequest({
        host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers,
      }, (ur) => {
        res.writeHead(ur.statusCode, ur.rawHeaders);
        ur.pipe(res);
      });
      up.on("error", () => {
        res.writeHead(502);
        res.end();
      });
      req.pipe(up);
      return;
    }
    if (host !== `app.example.test:${port}`) {
      res.writeHead(421);
      res.end();
      return;
    }
    const path = new URL(req.url, appOrigin).pathname;
    const headers = {
      "Content-Security-Policy": `default-src 'none'; script-src 'self'; connect-src 'self' ${authOrigin}; base-uri 'none'; frame-ancestors 'none'`,
      "Cache-Control": "no-store",
    };
    if (path === "/") {
      res.writeHead(200, { ...headers, "Content-Type": "text/html; charset=utf-8" });
      res.end(appPage);
    } else if (path === "/main.js") {
      res.writeHead(200, { ...headers, "Content-Type": "text/javascript" });
      res.end(mainJs(authOrigin));
    } else if (path === "/gatehouse.js") {
      res.writeHead(200, { ...headers, "Content-Type": "text/javascript" });
      res.end(readFileSync(LIB));
    } else if (path === "/api/items") {
      apiCalls.push({ host, authorization: req.headers.authorization ?? "" });
      res.writeHead(200, { ...headers, "Content-Type": "application/json" });
      res.end(JSON.stringify({ served_by: "app", items: [1, 2, 3] }));
    } else {
      res.writeHead(404, headers);
      res.end();
    }
  });
  return new Promise((resolve) => srv.listen(port, "127.0.0.1", () => resolve(srv)));
}

before(async () => {
  tls = makeCertificate();
  if (!tls) return;
  port = await freePort();
  appOrigin = `https://app.example.test:${port}`;
  authOrigin = `https://auth.example.test:${port}`;
  server = await startServer([
    "--allowed-origins", appOrigin,
    "--issuer", authOrigin,
    "--access-ttl", "2s",
    "--reuse-grace", "1s",
  ]);
  front = await startFront(server.base);
  browser = await launchBrowser(["--host-resolver-rules=MAP *.example.test 127.0.0.1", "--ignore-certificate-errors"]);
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (front ? front.close(r) : r()));
  await server?.stop();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

/** Counts requests to auth.example.test by path, with their statuses. */
function authTraffic(context) {
  const log = [];
  context.on("response", (res) => {
    const u = new URL(res.url());
    if (u.hostname === "auth.example.test" && res.request().method() !== "OPTIONS") {
      log.push(`${res.request().method()} ${u.pathname} ${res.status()}`);
    }
  });
  return log;
}

/** Every cookie of the auth host (any path). */
const authCookies = async (context) => (await context.cookies()).filter((c) => c.domain === "auth.example.test");

async function openApp(context, query = "") {
  const page = await context.newPage();
  await page.goto(appOrigin + "/" + query);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

describe("app on another subdomain (two hostnames, TLS)", () => {
  test("login, refresh after expiry, reload, app API on the app's origin, logout", async (t) => {
    if (!tls) return t.skip("openssl not available");
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("xsite"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    const traffic = authTraffic(context);
    const refreshes = countRefreshes(context);
    const page = await openApp(context, "?auto=0");

    // A first anonymous visit: no session, no logout event, no failing request.
    assert.equal(await page.evaluate(() => window.gh.resume()), null);
    assert.deepEqual(await page.evaluate(() => window.events), []);

    // Log in from the app page.
    const email = await page.evaluate(([e, p]) => window.gh.login(e, p).then((u) => u.email), [user.email, user.password]);
    assert.equal(email, user.email);
    const cookies = await authCookies(context);
    assert.deepEqual(cookies.map((c) => c.name).sort(), ["__Host-csrf_token", "__Secure-refresh_token"]);
    assert.equal(await page.evaluate(() => document.cookie), "", "the app cannot read the auth host's cookies");

    // The app's own API: a path resolves against the page, not the auth server, with the token.
    const api = await page.evaluate(() => window.gh.fetch("/api/items").then(async (r) => ({ status: r.status, body: await r.json() })));
    assert.equal(api.status, 200);
    assert.equal(api.body.served_by, "app");
    assert.equal(apiCalls.length, 1);
    assert.equal(apiCalls[0].host, `app.example.test:${port}`);
    assert.match(apiCalls[0].authorization, /^Bearer ey/);
    assert.ok(!traffic.some((l) => l.includes("/api/")), "no API call went to the auth server");

    // The access token (2 s) expires; the next call refreshes with the in-memory CSRF token.
    await sleep(2600);
    let before = refreshes.n;
    assert.equal(await page.evaluate(() => window.gh.me().then((u) => u.email)), user.email);
    assert.equal(refreshes.n - before, 1, "one refresh after expiry");
    assert.deepEqual(refreshes.statuses, [200]);

    // A reload: the page has only the cookies it cannot read; it asks GET /auth/csrf and resumes.
    await page.reload();
    await page.waitForFunction(() => window.ready === true);
    before = refreshes.n;
    assert.equal(await page.evaluate(() => window.gh.resume().then((u) => u && u.email)), user.email);
    assert.equal(refreshes.n - before, 1);
    assert.ok(traffic.includes("GET /auth/csrf 200"), `traffic: ${traffic}`);
    assert.deepEqual(await page.evaluate(() => window.events), ["login"]);
    // And again after the token expires, without a reload.
    await sleep(2600);
    assert.equal(await page.evaluate(() => window.gh.me().then((u) => u.email)), user.email);
    assert.ok(refreshes.statuses.every((s) => s === 200), `refresh statuses ${refreshes.statuses}`);

    // A CSRF token remembered from a session that another window of this browser has since
    // replaced is refused (403); the client asks GET /auth/csrf for the current one, once.
    let n = traffic.length;
    await page.evaluate(() => (window.gh.csrf = "stale-token-of-an-earlier-session"));
    assert.equal(await page.evaluate(() => window.gh.refresh()), true);
    assert.deepEqual(traffic.slice(n), ["POST /auth/refresh 403", "GET /auth/csrf 200", "POST /auth/refresh 200"]);

    // Logout works (204), clears the auth host's cookies and fires the logout event.
    n = traffic.length;
    await page.evaluate(() => window.gh.logout());
    assert.deepEqual(traffic.slice(n).filter((l) => l.startsWith("POST /auth/logout")), ["POST /auth/logout 204"]);
    assert.deepEqual(await authCookies(context), [], "cookies cleared");
    assert.deepEqual(await page.evaluate(() => window.events), ["login", "logout:logout"]);

    // After a reload the session is gone, quietly.
    await page.reload();
    await page.waitForFunction(() => window.ready === true);
    assert.equal(await page.evaluate(() => window.gh.resume()), null);
    assert.deepEqual(await page.evaluate(() => window.events), []);

    assert.deepEqual(traffic.filter((l) => / 403$/.test(l)), ["POST /auth/refresh 403"], "no other 403");
    assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0, "no web storage");
    assert.deepEqual(errors.filter((e) => !/status of 403/.test(e)), [], "no console errors but the provoked 403");
    await context.close();
  });

  test("background refresh keeps the session alive across token lifetimes; a reloaded page logs out everywhere", async (t) => {
    if (!tls) return t.skip("openssl not available");
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("xsite-auto"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    const traffic = authTraffic(context);
    const refreshes = countRefreshes(context);
    const page = await openApp(context);
    await page.evaluate(([e, p]) => window.gh.login(e, p), [user.email, user.password]);
    // The background refresh keeps the session alive across several token lifetimes.
    await sleep(4500);
    assert.ok(refreshes.n >= 2, `background refreshes: ${refreshes.n}`);
    assert.ok(refreshes.statuses.every((s) => s === 200), `refresh statuses ${refreshes.statuses}`);
    assert.equal(await page.evaluate(() => window.gh.authenticated), true);
    assert.deepEqual(await page.evaluate(() => window.events), ["login"], "never signed out");
    // A reload, then log out everywhere from the reloaded page.
    await page.reload();
    await page.waitForFunction(() => window.ready === true);
    assert.equal(await page.evaluate(() => window.gh.resume().then((u) => u && u.email)), user.email);
    await page.evaluate(() => window.gh.logout("global"));
    assert.ok(traffic.includes("POST /auth/logout 204"), `traffic: ${traffic}`);
    assert.deepEqual(await authCookies(context), []);
    assert.deepEqual(errors, []);
    await context.close();
  });
});
