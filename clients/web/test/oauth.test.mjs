// Gatehouse as an OAuth 2.1 / OpenID provider, seen from the browser: an app sends the user to
// /oauth2/authorize, Gatehouse sends the browser on to /account?oauth_request=<id>, and the
// account page signs the user in, asks for consent (third-party apps only), and follows the
// redirect back to the app with a code and the app's state.
//
// The first part runs the real flow against the real binary: two apps registered with
// `gatehouse client create` on the server's database (the SQLite file's master key beside it)
// before `serve`, whose redirect URI is a small HTTP server of this test that records what it
// receives; PKCE S256 computed here, and the codes redeemed at /oauth2/token with the verifier.
// The user signs in with a password, and once with a mailed sign-in code (--mail-dir), the
// request waiting meanwhile.
// The second part checks the page's own behaviour against mocked provider endpoints: the
// request id's journey (address bar, sessionStorage, reloads), the consent screen's words and
// keyboard use, the expired-request message, and the Connected apps list.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { createUser, launchBrowser, mailCode, readMails, startServer, uniqueEmail, waitForMail, watchConsole } from "./helpers.mjs";

// Requests the page makes and handles: the resume without a session (401), consent_required
// (403), an expired request (400), a consent revoked twice (404).
const EXPECTED = /Failed to load resource: the server responded with a status of (400|401|403|404)/;

const CONTINUE = "/oauth2/authorize/continue";
const STORAGE_KEY = "gatehouse.oauth_request";

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

// ------------------------------------------------------------------ helpers

/**
 * The app's redirect URI: a small HTTP server that records every request to /callback (its
 * query and Referer) and answers a plain page.
 */
async function startApp() {
  const hits = [];
  const srv = createServer((req, res) => {
    const url = new URL(req.url, "http://app.invalid");
    if (url.pathname === "/callback") hits.push({ query: url.searchParams, referer: req.headers["referer"] ?? null });
    if (url.pathname === "/favicon.ico") {
      res.writeHead(204);
      res.end();
      return;
    }
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end("<!doctype html><title>The app</title><p>Back in the app.</p>");
  });
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${srv.address().port}`;
  return {
    origin,
    redirectUri: origin + "/callback",
    hits,
    close: () => new Promise((resolve) => (srv.closeAllConnections?.(), srv.close(() => resolve()))),
  };
}

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/** A fresh PKCE pair, state and nonce. */
function pkce() {
  const verifier = b64url(randomBytes(32));
  return {
    verifier,
    challenge: b64url(createHash("sha256").update(verifier).digest()),
    state: b64url(randomBytes(16)),
    nonce: b64url(randomBytes(16)),
  };
}

const claims = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString("utf8"));

/** Counts the answers to POST /oauth2/authorize/continue of a context, and keeps their bodies.
 * The bodies are read by a route that lets the request through (a request event has no body
 * for the page's streamed Request objects). */
async function watchContinue(context, base) {
  const seen = { statuses: [], bodies: [], auth: [] };
  await context.route(base + CONTINUE, (route) => {
    const req = route.request();
    seen.bodies.push(JSON.parse(req.postData() ?? "null"));
    seen.auth.push(req.headers()["authorization"] ?? "");
    return route.continue();
  });
  context.on("response", (res) => {
    const req = res.request();
    if (req.method() === "POST" && new URL(req.url()).pathname === CONTINUE) seen.statuses.push(res.status());
  });
  return seen;
}

async function signIn(page, user) {
  await page.getByLabel("Email", { exact: true }).fill(user.email);
  await page.getByLabel("Password", { exact: true }).fill(user.password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

const focused = (page) => page.evaluate(() => document.activeElement?.id ?? "");
const stored = (page) => page.evaluate((k) => sessionStorage.getItem(k), STORAGE_KEY);

/** Waits until the browser is on the app's redirect URI; resolves to the hit it recorded. */
async function landed(page, app, before) {
  await page.waitForURL((u) => u.href.startsWith(app.redirectUri + "?"));
  for (let i = 0; i < 50 && app.hits.length <= before; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(app.hits.length, before + 1, "one request reached the redirect URI");
  return app.hits[before];
}

// ------------------------------------------------------------------ the real flow

describe("the OAuth provider's sign-in in the browser, with apps registered by `gatehouse client create`", () => {
  let app;
  let server;
  let thirdParty; // { client_id, client_secret }
  let other; // a second third-party app, for Deny
  let firstParty;
  const scope = "openid email offline_access notes:read";

  before(async () => {
    if (!browser) return;
    app = await startApp();
    server = await startServer(["--access-ttl", "5m"], {
      mail: true,
      beforeServe: ({ database, run }) => {
        const create = (...args) => {
          const out = run(["client", "create", "--database", database, "--redirect-uri", app.redirectUri, ...args]);
          const parsed = JSON.parse(out);
          assert.match(parsed.client_id, /^gh_client_/);
          return parsed;
        };
        thirdParty = create("--name", "Acme Notes", "--scope", "notes:read");
        other = create("--name", "Beta Photos");
        firstParty = create("--name", "Gatehouse Console", "--first-party");
      },
    });
  });

  after(async () => {
    await server?.stop();
    await app?.close();
  });

  /** The authorize URL for `client` with a fresh PKCE pair; resolves to it and the pair. */
  function authorize(client, scopes = scope) {
    const p = pkce();
    const q = new URLSearchParams({
      response_type: "code",
      client_id: client.client_id,
      redirect_uri: app.redirectUri,
      scope: scopes,
      state: p.state,
      nonce: p.nonce,
      code_challenge: p.challenge,
      code_challenge_method: "S256",
    });
    return { url: `${server.base}/oauth2/authorize?${q}`, ...p };
  }

  /** Redeems a code at the token endpoint (client_secret_basic) with the PKCE verifier. */
  async function redeem(client, code, verifier) {
    const r = await fetch(server.api + "/oauth2/token", {
      method: "POST",
      headers: {
        "Content-Type": "application/x-www-form-urlencoded",
        Authorization: "Basic " + Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString("base64"),
      },
      body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: app.redirectUri, code_verifier: verifier }),
    });
    const body = await r.json();
    assert.equal(r.status, 200, JSON.stringify(body));
    return body;
  }

  /** The consent screen for `name`, checked: title, scopes in words, focus on the title. */
  async function consentScreen(page, name) {
    await page.locator("#consent").waitFor({ state: "visible" });
    assert.equal(await page.locator("#oauth-title").textContent(), `Allow ${name} to use your account?`);
    assert.equal(await page.locator("#consent-app").textContent(), name);
    assert.equal(await focused(page), "oauth-title");
  }

  test("sign in, consent with the keyboard, back to the app with a code and the state; again without consent; Deny; Revoke asks again; a first-party app never asks", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const user = await createUser(server.api, uniqueEmail("oauth"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    const cont = await watchContinue(context, server.base);
    try {
      const page = await context.newPage();

      // 1. Signed out: /oauth2/authorize -> /account?oauth_request=<id>, the id leaves the address bar.
      let a = authorize(thirdParty);
      const redirected = page.waitForResponse((r) => r.url().startsWith(server.base + "/oauth2/authorize?"));
      await page.goto(a.url);
      const location = (await redirected).headers()["location"];
      const requestId = new URL(location, server.base).searchParams.get("oauth_request");
      assert.ok(requestId, `authorize sent the browser to ${location}`);
      await page.locator("#signin").waitFor({ state: "visible" });
      assert.equal(page.url(), server.base + "/account", "the request id left the address bar");
      assert.equal(JSON.parse(await stored(page)).id, requestId, "kept in sessionStorage");
      await page.locator("#oauth-hint").waitFor({ state: "visible" });

      await signIn(page, user);
      await consentScreen(page, "Acme Notes");
      assert.equal(await page.locator("#consent-user").textContent(), user.email);
      assert.deepEqual(await page.locator("#consent-scopes li").allTextContents(), [
        "Know who you are", "See your email address", "Stay signed in, also when you are not using it", "notes:read",
      ]);
      assert.equal(await page.locator("#consent-scopes li code").textContent(), "notes:read", "an unknown scope as it is");
      assert.deepEqual(cont.statuses, [403]);

      // Allow with the keyboard: Tab from the title reaches Allow, Enter presses it.
      await page.keyboard.press("Tab");
      assert.equal(await focused(page), "consent-allow");
      const before1 = app.hits.length;
      await page.keyboard.press("Enter");
      let hit = await landed(page, app, before1);
      assert.equal(hit.query.get("state"), a.state, "the app's state came back");
      assert.equal(hit.query.get("error"), null);
      const code = hit.query.get("code");
      assert.ok(code, "a code");
      assert.equal(hit.referer, null, "no Referer reaches the app");
      assert.deepEqual(cont.statuses, [403, 200]);
      assert.deepEqual(cont.bodies, [{ oauth_request: requestId }, { oauth_request: requestId, consent: true }]);
      assert.ok(cont.auth.every((h) => /^Bearer \S+$/.test(h)), "continue carries the page's access token");

      const tokens = await redeem(thirdParty, code, a.verifier);
      assert.equal(claims(tokens.id_token).nonce, a.nonce);
      assert.equal(claims(tokens.id_token).sub, user.user.id);
      assert.equal(claims(tokens.access_token).client_id, thirdParty.client_id);

      // 2. Again: signed in (refresh cookie) and allowed, so straight back to the app.
      a = authorize(thirdParty);
      const before2 = app.hits.length;
      await page.goto(a.url);
      hit = await landed(page, app, before2);
      assert.equal(hit.query.get("state"), a.state);
      assert.ok(hit.query.get("code"));
      assert.deepEqual(cont.statuses, [403, 200, 200], "no consent screen the second time");

      // 3. Another third-party app: Deny gives access_denied with the state.
      a = authorize(other, "openid");
      await page.goto(a.url);
      await consentScreen(page, "Beta Photos");
      assert.deepEqual(await page.locator("#consent-scopes li").allTextContents(), ["Know who you are"]);
      const before3 = app.hits.length;
      await page.getByRole("button", { name: "Deny", exact: true }).click();
      hit = await landed(page, app, before3);
      assert.equal(hit.query.get("error"), "access_denied");
      assert.equal(hit.query.get("state"), a.state);
      assert.equal(hit.query.get("code"), null);
      assert.deepEqual(cont.bodies.at(-1), { oauth_request: cont.bodies.at(-2).oauth_request, consent: false });

      // 4. Connected apps lists the allowed app only; Revoke empties it (and hides it).
      await page.goto(server.base + "/account");
      await page.locator("#account").waitFor({ state: "visible" });
      await page.locator("#apps-section").waitFor({ state: "visible" });
      const rows = page.locator("#apps tr");
      assert.equal(await rows.count(), 1);
      const row = await rows.first().textContent();
      assert.match(row, /Acme Notes/);
      assert.match(row, /Know who you are; see your email address; stay signed in, also when you are not using it; notes:read/);
      assert.doesNotMatch(row, /Beta Photos/);
      assert.equal(await page.locator("#apps tr time").count(), 1, "the date it was allowed");
      await page.getByRole("button", { name: "Revoke access: Acme Notes" }).click();
      await page.locator("#status", { hasText: "Acme Notes can no longer use your account" }).waitFor();
      await page.locator("#apps-section").waitFor({ state: "hidden" });
      const login = await fetch(server.api + "/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ email: user.email, password: user.password, token_transport: "body" }),
      }).then((r) => r.json());
      const listed = await fetch(server.api + "/auth/consents", { headers: { Authorization: "Bearer " + login.access_token } });
      assert.equal(listed.status, 200);
      assert.deepEqual((await listed.json()).consents, []);

      // 5. After the revocation the app asks again.
      a = authorize(thirdParty);
      const seen = cont.statuses.length;
      await page.goto(a.url);
      await consentScreen(page, "Acme Notes");
      assert.deepEqual(cont.statuses.slice(seen), [403]);
      const before5 = app.hits.length;
      await page.getByRole("button", { name: "Allow", exact: true }).click();
      hit = await landed(page, app, before5);
      assert.equal(hit.query.get("state"), a.state);
      assert.ok(hit.query.get("code"));

      // 6. A first-party app skips the consent.
      a = authorize(firstParty, "openid email");
      const seen6 = cont.statuses.length;
      const before6 = app.hits.length;
      await page.goto(a.url);
      hit = await landed(page, app, before6);
      assert.equal(hit.query.get("state"), a.state);
      const code6 = hit.query.get("code");
      assert.ok(code6);
      assert.deepEqual(cont.statuses.slice(seen6), [200], "no consent_required for a first-party app");
      const fp = await redeem(firstParty, code6, a.verifier);
      assert.equal(claims(fp.access_token).client_id, firstParty.client_id);

      // Nothing of a request is left behind in this tab.
      await page.goto(server.base + "/account");
      await page.locator("#account").waitFor({ state: "visible" });
      assert.equal(await stored(page), null);
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });

  test("another way in: the request waits through a mailed sign-in code, then a first-party app gets its code", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const user = await createUser(server.api, uniqueEmail("oauth-code"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    try {
      const page = await context.newPage();
      const a = authorize(firstParty, "openid email");
      await page.goto(a.url);
      await page.locator("#signin").waitFor({ state: "visible" });
      assert.equal(page.url(), server.base + "/account");
      const seen = readMails(server.mailDir).map((m) => m.file);
      await page.getByLabel("Email", { exact: true }).fill(user.email);
      await page.getByRole("button", { name: "Email me a sign-in link" }).click();
      await page.locator("#code-entry").waitFor({ state: "visible" });
      const mail = await waitForMail(server.mailDir, { to: user.email, contains: "/account/magic-link#token=", seen });
      await page.locator("#code-entry").getByLabel("6-digit code").fill(mailCode(mail));
      const before = app.hits.length;
      await page.getByRole("button", { name: "Continue" }).click();
      const hit = await landed(page, app, before);
      assert.equal(hit.query.get("state"), a.state);
      const tokens = await redeem(firstParty, hit.query.get("code"), a.verifier);
      assert.equal(claims(tokens.id_token).email, user.email);
      assert.deepEqual(claims(tokens.id_token).amr, ["email"], "the code carries how the user signed in");
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });

  test("a request that was used already: the expired message, on the account page", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const user = await createUser(server.api, uniqueEmail("oauth-used"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    try {
      const page = await context.newPage();
      const a = authorize(firstParty, "openid");
      const redirected = page.waitForResponse((r) => r.url().startsWith(server.base + "/oauth2/authorize?"));
      await page.goto(a.url);
      const location = (await redirected).headers()["location"];
      await page.locator("#signin").waitFor({ state: "visible" });
      await signIn(page, user);
      const before = app.hits.length;
      await landed(page, app, before);

      // The same request once more (as from the history): single use.
      await page.goto(new URL(location, server.base).href);
      await page.locator("#alert", { hasText: "This sign-in request has expired. Go back to the app and try again." }).waitFor();
      await page.locator("#account").waitFor({ state: "visible" });
      assert.equal(page.url(), server.base + "/account");
      assert.equal(await stored(page), null);
      assert.equal(app.hits.length, before + 1, "not sent to the app again");
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });
});

// ------------------------------------------------------------------ the page, mocked endpoints

describe("the account page's OAuth parts, against mocked endpoints", () => {
  let app;
  let plain;

  before(async () => {
    if (!browser) return;
    app = await startApp();
    plain = await startServer(["--access-ttl", "5m"]);
  });
  after(async () => {
    await plain?.stop();
    await app?.close();
  });

  /** Mocks POST /oauth2/authorize/continue with `answer(body)` -> { status, json }. */
  async function mockContinue(context, answer) {
    const calls = [];
    await context.route(plain.base + CONTINUE, async (route) => {
      const body = JSON.parse(route.request().postData() ?? "null");
      calls.push({ body, auth: route.request().headers()["authorization"] ?? "" });
      const { status, json } = answer(body);
      await route.fulfill({ status, contentType: "application/json", body: JSON.stringify(json) });
    });
    return calls;
  }

  const consentRequired = {
    status: 403,
    json: {
      error: "consent_required",
      error_description: "the user has not allowed this client",
      client: { client_id: "gh_client_x", name: "Acme <b>Notes</b>" },
      scopes: ["openid", "email", "profile", "offline_access", "photos:write"],
    },
  };

  test("the id leaves the address bar, survives reloads in the tab, and is continued after sign-in; the consent screen in words and by keyboard", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const user = await createUser(plain.api, uniqueEmail("oauth-mock"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    const calls = await mockContinue(context, (body) =>
      body.consent === true ? { status: 200, json: { redirect: `${app.redirectUri}?code=c-1&state=s-1` } } : consentRequired);
    try {
      const page = await context.newPage();
      await page.goto(plain.base + "/account?oauth_request=req-1&keep=1");
      await page.locator("#signin").waitFor({ state: "visible" });
      assert.equal(page.url(), plain.base + "/account?keep=1", "only the request id left the address");
      assert.equal(JSON.parse(await stored(page)).id, "req-1");
      await page.locator("#oauth-hint").waitFor({ state: "visible" });

      // A reload (as after a provider's round trip) keeps it; another tab does not have it.
      await page.goto(plain.base + "/account");
      await page.locator("#oauth-hint").waitFor({ state: "visible" });
      const tab2 = await context.newPage();
      await tab2.goto(plain.base + "/account");
      await tab2.locator("#signin").waitFor({ state: "visible" });
      assert.equal(await tab2.locator("#oauth-hint").isHidden(), true);
      assert.equal(await stored(tab2), null);
      await tab2.close();
      assert.equal(calls.length, 0, "nothing is continued before sign-in");

      await signIn(page, user);
      await page.locator("#consent").waitFor({ state: "visible" });
      assert.equal(await page.locator("#oauth-title").textContent(), "Allow Acme <b>Notes</b> to use your account?");
      assert.equal(await page.locator("#oauth b").count(), 0, "the name is text, never markup");
      assert.deepEqual(await page.locator("#consent-scopes li").allTextContents(), [
        "Know who you are", "See your email address", "See your name and profile",
        "Stay signed in, also when you are not using it", "photos:write",
      ]);
      assert.equal(await page.locator("#account").isHidden(), true);
      assert.equal(await focused(page), "oauth-title");
      assert.deepEqual(calls.map((c) => c.body), [{ oauth_request: "req-1" }]);
      assert.match(calls[0].auth, /^Bearer \S+$/);

      // Tab reaches Allow, then Deny; Shift+Tab back to Allow; Space presses it.
      await page.keyboard.press("Tab");
      assert.equal(await focused(page), "consent-allow");
      await page.keyboard.press("Tab");
      assert.equal(await focused(page), "consent-deny");
      await page.keyboard.press("Shift+Tab");
      const before = app.hits.length;
      await page.keyboard.press("Space");
      const hit = await landed(page, app, before);
      assert.equal(hit.query.get("code"), "c-1");
      assert.equal(hit.query.get("state"), "s-1");
      assert.deepEqual(calls.map((c) => c.body), [{ oauth_request: "req-1" }, { oauth_request: "req-1", consent: true }]);

      // Answered: the tab forgot it; the account page shows as usual.
      await page.goto(plain.base + "/account");
      await page.locator("#account").waitFor({ state: "visible" });
      assert.equal(await stored(page), null);
      assert.equal(calls.length, 2);
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });

  test("signed in already: Deny sends consent false and follows the access_denied redirect", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const user = await createUser(plain.api, uniqueEmail("oauth-deny"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    const calls = await mockContinue(context, (body) =>
      body.consent === false ? { status: 200, json: { redirect: `${app.redirectUri}?error=access_denied&state=s-2` } } : consentRequired);
    try {
      const page = await context.newPage();
      await page.goto(plain.base + "/account");
      await signIn(page, user);
      await page.locator("#account").waitFor({ state: "visible" });
      await page.goto(plain.base + "/account?oauth_request=req-2");
      await page.locator("#consent").waitFor({ state: "visible" });
      assert.equal(page.url(), plain.base + "/account");
      const before = app.hits.length;
      await page.getByRole("button", { name: "Deny", exact: true }).click();
      const hit = await landed(page, app, before);
      assert.equal(hit.query.get("error"), "access_denied");
      assert.equal(hit.query.get("state"), "s-2");
      assert.deepEqual(calls.map((c) => c.body), [{ oauth_request: "req-2" }, { oauth_request: "req-2", consent: false }]);
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });

  test("an expired request: the message, and the account page", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const user = await createUser(plain.api, uniqueEmail("oauth-expired"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    const calls = await mockContinue(context, () => ({ status: 400, json: { error: "invalid_request", error_description: "unknown or expired request" } }));
    try {
      const page = await context.newPage();
      await page.goto(plain.base + "/account?oauth_request=old");
      await page.locator("#signin").waitFor({ state: "visible" });
      await signIn(page, user);
      await page.locator("#alert", { hasText: "This sign-in request has expired. Go back to the app and try again." }).waitFor();
      assert.equal(await page.locator("#alert").textContent(), "This sign-in request has expired. Go back to the app and try again.");
      await page.locator("#account").waitFor({ state: "visible" });
      assert.equal(await page.locator("#oauth").isHidden(), true);
      assert.equal(await stored(page), null);
      assert.equal(calls.length, 1);
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });

  test("Connected apps: hidden when empty; name, scopes and date; Revoke deletes and refreshes the list", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const user = await createUser(plain.api, uniqueEmail("oauth-apps"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    let list = [];
    const deleted = [];
    await context.route(plain.base + "/auth/consents", (route) => {
      assert.match(route.request().headers()["authorization"] ?? "", /^Bearer /);
      route.fulfill({ json: { consents: list } });
    });
    await context.route(plain.base + "/auth/consents/*", (route) => {
      assert.equal(route.request().method(), "DELETE");
      const id = decodeURIComponent(new URL(route.request().url()).pathname.split("/").pop());
      deleted.push(id);
      const before = list.length;
      list = list.filter((c) => c.client_id !== id);
      if (list.length === before) {
        route.fulfill({ status: 404, contentType: "application/problem+json", body: JSON.stringify({ status: 404, code: "not_found", detail: "no" }) });
      } else {
        route.fulfill({ status: 204 });
      }
    });
    try {
      const page = await context.newPage();
      await page.goto(plain.base + "/account");
      await signIn(page, user);
      await page.locator("#account").waitFor({ state: "visible" });
      await page.waitForLoadState("networkidle");
      assert.equal(await page.locator("#apps-section").isHidden(), true, "no apps: no section");

      list = [
        { client_id: "gh_client_b", client_name: "Beta Photos", scopes: ["openid"], created_at: "2026-02-03T04:05:06Z" },
        { client_id: "gh_client_a", client_name: "Acme Notes", scopes: ["openid", "email", "offline_access", "notes:read"], created_at: "2026-01-02T03:04:05Z" },
      ];
      await page.goto(plain.base + "/account");
      await page.locator("#apps-section").waitFor({ state: "visible" });
      const rows = page.locator("#apps tr");
      assert.equal(await rows.count(), 2);
      assert.equal(await rows.nth(0).locator("td").nth(0).textContent(), "Acme Notes", "oldest first");
      assert.equal(await rows.nth(0).locator("td").nth(1).textContent(),
        "Know who you are; see your email address; stay signed in, also when you are not using it; notes:read");
      assert.equal(await rows.nth(0).locator("time").getAttribute("datetime"), "2026-01-02T03:04:05Z");
      assert.equal(await rows.nth(1).locator("td").nth(0).textContent(), "Beta Photos");

      await page.getByRole("button", { name: "Revoke access: Acme Notes" }).click();
      await page.locator("#status", { hasText: "Acme Notes can no longer use your account" }).waitFor();
      assert.equal(await rows.count(), 1);
      assert.equal(await focused(page), "apps-title");

      // Revoked elsewhere meanwhile: a readable 404, and the list catches up.
      list = [];
      await page.getByRole("button", { name: "Revoke access: Beta Photos" }).click();
      await page.locator("#alert", { hasText: "Beta Photos had no access any more." }).waitFor();
      await page.locator("#apps-section").waitFor({ state: "hidden" });
      assert.deepEqual(deleted, ["gh_client_a", "gh_client_b"]);
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });
});
