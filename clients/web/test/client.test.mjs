// The client library in real Chromium against the real binary (access tokens live 2 s,
// reuse grace 1 s). Pages are a blank document served at the server's origin through
// Playwright routing, with dist/gatehouse.iife.js injected, so the library runs alone.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { join } from "node:path";
import {
  countRefreshes, createUser, launchBrowser, sleep, startServer, uniqueEmail, watchConsole, webRoot,
} from "./helpers.mjs";

const LIB = join(webRoot, "dist", "gatehouse.iife.js");
const EXPECTED_401 = /Failed to load resource: the server responded with a status of 401/;

let server;
let browser;

before(async () => {
  server = await startServer(["--access-ttl", "2s", "--reuse-grace", "1s"]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function newContext() {
  const context = await browser.newContext();
  await context.route(server.base + "/__blank", (route) =>
    route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>blank</title>" }));
  return context;
}

async function openTab(context, options = {}) {
  const page = await context.newPage();
  await page.goto(server.base + "/__blank");
  await page.addScriptTag({ path: LIB });
  await page.evaluate((opts) => {
    window.events = [];
    window.gh = new window.Gatehouse.GatehouseClient(opts);
    window.gh.on("logout", (d) => window.events.push("logout:" + d.reason));
    window.gh.on("login", () => window.events.push("login"));
  }, options);
  return page;
}

const fire = (page, n, path = "/auth/me") =>
  page.evaluate(
    ([n, path]) => Promise.all(Array.from({ length: n }, () => window.gh.fetch(path).then((r) => r.status))),
    [n, path],
  );

describe("client library", { skip: false }, () => {
  test("Secure/__Host- cookies are accepted by Chromium on http://127.0.0.1", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("cookie"));
    const context = await newContext();
    const page = await openTab(context);
    await page.evaluate(([e, p]) => window.gh.login(e, p), [user.email, user.password]);
    const names = (await context.cookies()).map((c) => c.name).sort();
    assert.deepEqual(names, ["__Host-csrf_token", "__Secure-refresh_token"]);
    const jsVisible = await page.evaluate(() => document.cookie);
    assert.match(jsVisible, /__Host-csrf_token=/);
    assert.doesNotMatch(jsVisible, /refresh_token/, "the refresh cookie must be HttpOnly");
    await context.close();
  });

  test("(a) two tabs with expired tokens, 10 requests each: exactly one refresh, no logout", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("tabs"));
    const context = await newContext();
    const errors = watchConsole(context);
    const refreshes = countRefreshes(context);
    // autoRefresh off, so the tokens really expire while the tabs idle.
    const tab1 = await openTab(context, { autoRefresh: false });
    const tab2 = await openTab(context, { autoRefresh: false });
    await tab1.evaluate(([e, p]) => window.gh.login(e, p), [user.email, user.password]);
    // tab2 got the token by broadcast, or resumes from the cookie.
    assert.equal(await tab2.evaluate(() => window.gh.resume().then((u) => u && u.email)), user.email);
    await sleep(2600); // past the 2 s access-token lifetime

    const before = refreshes.n;
    const [s1, s2] = await Promise.all([fire(tab1, 10), fire(tab2, 10)]);
    assert.deepEqual([...s1, ...s2], Array(20).fill(200), "all 20 requests succeed");
    assert.equal(refreshes.n - before, 1, "exactly one POST /auth/refresh for both tabs");
    for (const tab of [tab1, tab2]) {
      assert.ok(!(await tab.evaluate(() => window.events)).some((e) => e.startsWith("logout")), "no logout event");
    }

    // The same on a 401 invalid_token: both tabs get a token the server rejects
    // (pushed over the tabs' own channel), then fire 10 requests each.
    await tab1.evaluate(() => {
      const gh = window.gh;
      new BroadcastChannel("gatehouse-auth").postMessage({
        type: "token", accessToken: "not.a.token", expiresAt: Date.now() + 3_600_000, lifetimeMs: 3_600_000,
        sessionId: gh.sessionId, user: gh.user,
      });
    });
    await sleep(200);
    const before401 = refreshes.n;
    const [r1, r2] = await Promise.all([fire(tab1, 10), fire(tab2, 10)]);
    assert.deepEqual([...r1, ...r2], Array(20).fill(200), "all 20 requests succeed after one retry");
    assert.equal(refreshes.n - before401, 1, "exactly one refresh for 20 requests that got 401 invalid_token");
    assert.ok(refreshes.statuses.every((s) => s === 200), `refresh statuses ${refreshes.statuses}`);
    assert.deepEqual(errors.filter((e) => !EXPECTED_401.test(e)), []);
    await context.close();
  });

  test("proactive refresh before expiry happens once per period across two tabs", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("proactive"));
    const context = await newContext();
    const errors = watchConsole(context);
    const refreshes = countRefreshes(context);
    const tab1 = await openTab(context);
    const tab2 = await openTab(context);
    await tab1.evaluate(([e, p]) => window.gh.login(e, p), [user.email, user.password]);
    await tab2.evaluate(() => window.gh.resume());
    const start = refreshes.n;
    const statuses = [];
    const t0 = Date.now();
    while (Date.now() - t0 < 5000) {
      statuses.push(...(await Promise.all([fire(tab1, 1), fire(tab2, 1)])).flat());
      await sleep(200);
    }
    const n = refreshes.n - start;
    // Tokens live 2 s and are refreshed 0.5 s before expiry: ~3-4 periods in 5 s.
    // Uncoordinated tabs would need twice as many.
    assert.ok(n >= 2 && n <= 5, `refreshes in 5 s: ${n}`);
    assert.ok(statuses.every((s) => s === 200), `statuses ${statuses}`);
    assert.deepEqual(errors, [], "no 401 at all: tokens were renewed before they expired");
    await context.close();
  });

  test("(b) reuse verdict: logged-out event once, no refresh loop", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("reuse"));
    const context = await newContext();
    const errors = watchConsole(context);
    const refreshes = countRefreshes(context);
    const tab1 = await openTab(context, { autoRefresh: false });
    const tab2 = await openTab(context, { autoRefresh: false });
    await tab1.evaluate(([e, p]) => window.gh.login(e, p), [user.email, user.password]);
    const jar = await context.cookies();
    const old = jar.find((c) => c.name === "__Secure-refresh_token").value;
    const csrf = jar.find((c) => c.name === "__Host-csrf_token").value;
    assert.equal(await tab1.evaluate(() => window.gh.refresh()), true); // rotates
    await sleep(1500); // past the 1 s grace window

    const replay = await fetch(server.base + "/auth/refresh", {
      method: "POST",
      headers: { Cookie: `__Secure-refresh_token=${old}; __Host-csrf_token=${csrf}`, "X-CSRF-Token": csrf },
    });
    assert.equal(replay.status, 401);
    assert.equal((await replay.json()).code, "refresh_token_reused");

    const before = refreshes.n;
    const [s1, s2] = await Promise.all([fire(tab1, 10), fire(tab2, 10)]);
    assert.deepEqual([...s1, ...s2], Array(20).fill(401), "the revoked session's requests fail");
    await sleep(2500); // give any loop time to show itself
    assert.equal(refreshes.n - before, 1, "one failed refresh, no loop");
    for (const tab of [tab1, tab2]) {
      const ev = (await tab.evaluate(() => window.events)).filter((e) => e.startsWith("logout"));
      assert.equal(ev.length, 1, `one logout event per tab: ${ev}`);
      assert.match(ev[0], /logout:(refresh_token_reused|invalid_refresh_token)/);
      assert.equal(await tab.evaluate(() => window.gh.authenticated), false);
    }
    // Further calls do not refresh again.
    await fire(tab1, 3);
    assert.equal(refreshes.n - before, 1);
    assert.deepEqual(errors.filter((e) => !EXPECTED_401.test(e)), []);
    await context.close();
  });
});

describe("client library: 401 retries and the logout event", () => {
  test("a plain 401 from an API that got the access token: one refresh and one retry (fetch and axios)", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("plain401"));
    const context = await newContext();
    const refreshes = countRefreshes(context);
    // An app API on the page's origin that answers a plain 401 (no WWW-Authenticate error)
    // to the token it considers stale, and to no token at all; /api/always401 always does.
    const seen = [];
    let staleToken = null;
    await context.route(server.base + "/api/**", (route) => {
      const req = route.request();
      const authz = req.headers()["authorization"] ?? "";
      seen.push(authz);
      const refuse = req.url().endsWith("/api/always401") || authz === "" || authz === "Bearer " + staleToken;
      return refuse
        ? route.fulfill({ status: 401, contentType: "application/json", body: '{"error":"unauthorized"}' })
        : route.fulfill({ status: 200, contentType: "application/json", body: '{"ok":true}' });
    });
    const page = await openTab(context, { autoRefresh: false });
    await page.evaluate(([e, p]) => window.gh.login(e, p), [user.email, user.password]);
    staleToken = await page.evaluate(() => window.gh.getAccessToken());

    let before = refreshes.n;
    assert.equal(await page.evaluate(() => window.gh.fetch("/api/items").then((r) => r.status)), 200);
    assert.equal(refreshes.n - before, 1, "one refresh after the plain 401");
    assert.equal(seen.length, 2, `requests seen by the API: ${seen.length}`);
    assert.equal(seen[0], "Bearer " + staleToken);
    assert.match(seen[1], /^Bearer /);
    assert.notEqual(seen[1], seen[0], "the retry carries the new token");

    // An API that always answers 401: exactly one refresh and one retry, then the 401.
    staleToken = await page.evaluate(() => window.gh.getAccessToken());
    seen.length = 0;
    before = refreshes.n;
    assert.equal(await page.evaluate(() => window.gh.fetch("/api/always401").then((r) => r.status)), 401);
    assert.equal(seen.length, 2, "one retry, no loop");
    assert.equal(refreshes.n - before, 1);
    assert.equal(await page.evaluate(() => window.gh.authenticated), true, "the session is still fine");

    // The axios interceptors do the same (a minimal axios-shaped instance over fetch).
    staleToken = await page.evaluate(() => window.gh.getAccessToken());
    seen.length = 0;
    before = refreshes.n;
    const viaAxios = await page.evaluate(async () => {
      const req = [];
      const res = [];
      const api = {
        interceptors: {
          request: { use: (f) => req.push(f) },
          response: { use: (ok, bad) => res.push(bad) },
        },
        async request(config) {
          for (const f of req) config = await f(config);
          const r = await fetch(config.url, { headers: config.headers });
          if (r.ok) return { status: r.status };
          return res[0]({ config, response: { status: r.status, headers: { get: (n) => r.headers.get(n) } } });
        },
      };
      window.Gatehouse.attachGatehouse(api, window.gh);
      try {
        return (await api.request({ url: "/api/items" })).status;
      } catch (e) {
        return e.response ? e.response.status : String(e);
      }
    });
    assert.equal(viaAxios, 200, "axios: retried once after a plain 401");
    assert.equal(seen.length, 2);
    assert.equal(refreshes.n - before, 1);

    // A request that carried no token (signed out) is not retried and triggers no refresh.
    await page.evaluate(() => window.gh.logout());
    seen.length = 0;
    before = refreshes.n;
    assert.equal(await page.evaluate(() => window.gh.fetch("/api/items").then((r) => r.status)), 401);
    assert.deepEqual(seen, [""]);
    assert.equal(refreshes.n - before, 0);
    await context.close();
  });

  test("a first anonymous visit fires no logout event; a real logout fires one in every tab", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("anon"));
    const context = await newContext();
    const errors = watchConsole(context);
    const refreshes = countRefreshes(context);
    const tab1 = await openTab(context);
    const tab2 = await openTab(context);
    for (const tab of [tab1, tab2]) {
      assert.equal(await tab.evaluate(() => window.gh.resume()), null);
      assert.equal(await tab.evaluate(() => window.gh.getAccessToken()), null);
    }
    await sleep(200);
    for (const tab of [tab1, tab2]) assert.deepEqual(await tab.evaluate(() => window.events), [], "anonymous: no events");
    assert.equal(refreshes.n, 0, "no refresh request without a session");

    await tab1.evaluate(([e, p]) => window.gh.login(e, p), [user.email, user.password]);
    await sleep(200);
    await tab1.evaluate(() => window.gh.logout());
    await sleep(200);
    for (const tab of [tab1, tab2]) {
      assert.deepEqual(await tab.evaluate(() => window.events), ["login", "logout:logout"], "login then one logout");
    }

    // After the logout, a new tab is an anonymous visit again: no event.
    const tab3 = await openTab(context);
    assert.equal(await tab3.evaluate(() => window.gh.resume()), null);
    await sleep(100);
    assert.deepEqual(await tab3.evaluate(() => window.events), []);
    assert.deepEqual(errors, []);
    await context.close();
  });
});
