// Sign-in with an external identity provider in real Chromium: the account page's provider
// button goes through a real OpenID provider's login page (e2e/testop: zitadel/oidc's op with
// a login form) and back to the page signed in, with amr "fed"; Linked accounts lists the
// identity; an identity that is the last way in cannot be unlinked; an address that already
// has an account answers account_exists, and that account links the provider from Linked
// accounts and unlinks it; a cancel at the provider comes back with a readable message. The
// library's body transport: loginWith(..., { transport: "body" }), takeProviderReturn and
// exchangeLoginCode (single use).
//
// The provider is configured with `gatehouse idp add` on the server's database before `serve`;
// its redirect URI needs the server's URL, so the port is chosen first.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { createUser, freePort, launchBrowser, repoRoot, startServer, uniqueEmail, watchConsole, webRoot } from "./helpers.mjs";

const LIB = join(webRoot, "dist", "gatehouse.iife.js");
const IDP = "testop";
const IDP_LABEL = "Test OP";
const OP_PASSWORD = "op-password-1";

// Requests the page makes and handles: the resume without a session (401), last_login_method
// (409), a used login code (400/401).
const EXPECTED = /Failed to load resource: the server responded with a status of (400|401|409)/;

const users = {
  alice: uniqueEmail("idp-alice"), // new to Gatehouse: the provider creates her account
  bob: uniqueEmail("idp-bob"), // has a password account already (unverified address)
  carol: uniqueEmail("idp-carol"), // cancels at the provider
  dave: uniqueEmail("idp-dave"), // body transport
};

let tmp;
let op; // { issuer, proc }
let server;
let browser;

/** Builds and starts e2e/testop; resolves to its issuer once it printed it. */
async function startOP(redirect) {
  const bin = join(tmp, "testop");
  execFileSync("go", ["build", "-o", bin, "./e2e/testop"], { cwd: repoRoot, stdio: ["ignore", "inherit", "inherit"] });
  const args = ["-addr", "127.0.0.1:0", "-client-id", "gatehouse-web", "-client-secret", "op-client-secret", "-redirect", redirect, "-watch-stdin"];
  for (const email of Object.values(users)) args.push("-user", `${email}:${OP_PASSWORD}:${email}`);
  // stdin stays an open pipe: the provider exits when this process does, even if it crashed.
  const proc = spawn(bin, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr += d));
  const line = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout });
    const timer = setTimeout(() => reject(new Error("testop printed no issuer within 30 s:\n" + stderr)), 30_000);
    rl.once("line", (l) => (clearTimeout(timer), resolve(l)));
    proc.once("exit", (code) => (clearTimeout(timer), reject(new Error(`testop exited (${code}):\n${stderr}`))));
  });
  const { issuer } = JSON.parse(line);
  assert.match(issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
  return { issuer, proc, stderr: () => stderr };
}

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** The server with the provider configured (`gatehouse idp add` before `serve`), and the provider. */
async function startWithProvider() {
  tmp = mkdtempSync(join(tmpdir(), "gatehouse-idp-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  op = await startOP(`${base}/auth/idps/${IDP}/callback`);
  const secretFile = join(tmp, "client-secret");
  writeFileSync(secretFile, "op-client-secret\n", { mode: 0o600 });
  server = await startServer(["--access-ttl", "5m", "--public-url", base], {
    port,
    beforeServe: ({ database, run }) => {
      run(["idp", "add", IDP, "--database", database, "--issuer", op.issuer, "--client-id", "gatehouse-web",
        "--client-secret-file", secretFile, "--display-name", IDP_LABEL]);
    },
  });
}

async function stopWithProvider() {
  await server?.stop();
  if (op) {
    op.proc.stdin.end();
    op.proc.kill("SIGTERM");
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}

// ------------------------------------------------------------------ helpers

const claims = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString("utf8"));

async function openAccount(context) {
  const page = await context.newPage();
  await page.goto(server.base + "/account");
  await page.locator("#signin, #account").first().waitFor({ state: "visible" });
  return page;
}

/** On the provider's own login page: signs in as `email`. */
async function providerLogin(page, email) {
  await page.waitForURL((u) => u.href.startsWith(op.issuer + "/login/"));
  await page.getByLabel("Username").fill(email);
  await page.getByLabel("Password").fill(OP_PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** Waits until the browser is back on the account page, its address cleaned of query and fragment. */
async function backOnAccount(page) {
  await page.waitForURL((u) => u.origin === server.base && u.pathname === "/account");
  await page.waitForFunction(() => location.search === "" && location.hash === "");
  assert.equal(page.url(), server.base + "/account");
}

const identityRows = (page) => page.locator("#identities tr");

async function api(path, { method = "GET", token, body } = {}) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(server.api + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function passwordLogin(email, password) {
  const r = await api("/auth/login", { method: "POST", body: { email, password, token_transport: "body" } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.access_token;
}

// ------------------------------------------------------------------ tests

describe("external identity providers in the browser, with a real OpenID provider", () => {
  before(async () => {
    if (browser) await startWithProvider();
  });
  after(stopWithProvider);

  test("the provider's button goes through its login page and comes back signed in; Linked accounts lists it; the last way in stays", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const context = await browser.newContext();
    const errors = watchConsole(context);
    try {
      const providers = await api("/auth/idps");
      assert.equal(providers.status, 200);
      assert.deepEqual(providers.body.providers, [{ name: IDP, display_name: IDP_LABEL }]);

      const page = await openAccount(context);
      await page.locator("#signin").waitFor({ state: "visible" });
      const button = page.getByRole("button", { name: `Sign in with ${IDP_LABEL}` });
      await button.waitFor({ state: "visible" });
      await button.click();

      // The callback sets the refresh cookie; the page's refresh picks the session up.
      const refreshed = page.waitForResponse((r) => r.url() === server.base + "/auth/refresh" && r.status() === 200);
      await providerLogin(page, users.alice);
      await backOnAccount(page);
      const token = (await (await refreshed).json()).access_token;
      assert.deepEqual(claims(token).amr, ["fed"], "a provider sign-in has amr fed");

      await page.locator("#account").waitFor({ state: "visible" });
      assert.equal(await page.locator("#user-email").textContent(), users.alice);
      await page.locator("#status", { hasText: `Signed in with ${IDP_LABEL} as ${users.alice}` }).waitFor();
      assert.equal(await page.evaluate(() => document.activeElement?.id), "account-title");

      // Linked accounts: the identity, and no "Link" button for a provider already linked.
      await page.locator("#identities-section").waitFor({ state: "visible" });
      await identityRows(page).first().waitFor();
      assert.equal(await identityRows(page).count(), 1);
      const row = identityRows(page).first();
      assert.match(await row.textContent(), new RegExp(`${IDP_LABEL}.*${users.alice.replace(/[.+]/g, "\\$&")}`));
      assert.equal(await page.locator("#identity-links").isHidden(), true);

      // The server agrees, and knows the user has no password: the identity is the last way in.
      const me = await api("/auth/identities", { token });
      assert.equal(me.status, 200);
      assert.equal(me.body.identities.length, 1);
      assert.equal(me.body.identities[0].provider, IDP);
      assert.equal(me.body.identities[0].email, users.alice);

      await row.getByRole("button", { name: `Unlink ${IDP_LABEL}: ${users.alice}` }).click();
      await page.locator("#alert", { hasText: `You cannot unlink ${IDP_LABEL}: it is the only way left to sign in` }).waitFor();
      assert.equal(await identityRows(page).count(), 1, "the identity stays");

      // Signing out and in again with the provider finds the same account.
      await page.getByRole("button", { name: "Log out", exact: true }).click();
      await page.locator("#signin").waitFor({ state: "visible" });
      await page.getByRole("button", { name: `Sign in with ${IDP_LABEL}` }).click();
      const refreshedAgain = page.waitForResponse((r) => r.url() === server.base + "/auth/refresh" && r.status() === 200);
      await providerLogin(page, users.alice);
      await backOnAccount(page);
      const token2 = (await (await refreshedAgain).json()).access_token;
      assert.equal(claims(token2).sub, claims(token).sub, "the same user");
      await page.locator("#account").waitFor({ state: "visible" });
      assert.equal(await page.locator("#user-email").textContent(), users.alice);
      const again = await api("/auth/identities", { token: token2 });
      assert.equal(again.body.identities.length, 1, "no second identity or account");

      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });

  test("an address with an account gets account_exists; signed in with the password it links the provider, and unlinks it", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const bob = await createUser(server.api, users.bob);
    const context = await browser.newContext();
    const errors = watchConsole(context);
    try {
      const page = await openAccount(context);
      await page.getByRole("button", { name: `Sign in with ${IDP_LABEL}` }).click();
      await providerLogin(page, users.bob);
      await backOnAccount(page);
      await page.locator("#alert", {
        hasText: `An account with this email already exists. Sign in with your password, then link ${IDP_LABEL} from Linked accounts.`,
      }).waitFor();
      await page.locator("#signin").waitFor({ state: "visible" });
      assert.equal(await page.evaluate(() => document.activeElement?.id), "email", "focus on the form the message points to");

      // The password sign-in; nothing is linked yet.
      await page.getByLabel("Email", { exact: true }).fill(bob.email);
      await page.getByLabel("Password", { exact: true }).fill(bob.password);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.locator("#account").waitFor({ state: "visible" });
      await page.locator("#identities-section").waitFor({ state: "visible" });
      await page.locator("#identities-empty").waitFor({ state: "visible" });
      assert.equal(await identityRows(page).count(), 0);

      // Link: through the provider's login and back, signed in as before.
      await page.getByRole("button", { name: `Link ${IDP_LABEL}` }).click();
      await providerLogin(page, users.bob);
      await backOnAccount(page);
      await page.locator("#status", { hasText: `${IDP_LABEL} is linked to your account` }).waitFor();
      assert.equal(await page.evaluate(() => document.activeElement?.id), "identities-title");
      assert.equal(await page.locator("#user-email").textContent(), bob.email);
      await identityRows(page).first().waitFor();
      assert.equal(await identityRows(page).count(), 1);
      assert.match(await identityRows(page).first().textContent(), new RegExp(IDP_LABEL));
      const token = await passwordLogin(bob.email, bob.password);
      const linked = await api("/auth/identities", { token });
      assert.equal(linked.body.identities.length, 1);
      assert.equal(linked.body.identities[0].provider, IDP);

      // Unlink: the password is left, so it is allowed; the row goes, on the server too.
      await identityRows(page).first().getByRole("button", { name: new RegExp(`^Unlink ${IDP_LABEL}`) }).click();
      await page.locator("#status", { hasText: `Unlinked your ${IDP_LABEL} account` }).waitFor();
      await page.locator("#identities-empty").waitFor({ state: "visible" });
      assert.equal(await identityRows(page).count(), 0);
      assert.equal(await page.evaluate(() => document.activeElement?.id), "identities-title");
      await page.getByRole("button", { name: `Link ${IDP_LABEL}` }).waitFor({ state: "visible" });
      const unlinked = await api("/auth/identities", { token });
      assert.deepEqual(unlinked.body.identities, []);

      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });

  test("cancelling at the provider comes back signed out with a readable message", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const context = await browser.newContext();
    const errors = watchConsole(context);
    try {
      const page = await openAccount(context);
      await page.getByRole("button", { name: `Sign in with ${IDP_LABEL}` }).click();
      await page.waitForURL((u) => u.href.startsWith(op.issuer + "/login/"));
      await page.getByRole("button", { name: "Cancel" }).click();
      await backOnAccount(page);
      await page.locator("#alert", { hasText: `Signing in with ${IDP_LABEL} was cancelled.` }).waitFor();
      await page.locator("#signin").waitFor({ state: "visible" });
      assert.equal(await page.locator("#account").isHidden(), true);
      const sessions = await context.cookies(server.base);
      assert.equal(sessions.some((c) => /refresh/.test(c.name)), false, "no session after a cancel");
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });

  test("the library's body transport: loginWith, takeProviderReturn, exchangeLoginCode once", async (t) => {
    if (!browser) return t.skip("no Chromium");
    // A page of Gatehouse's origin stands for the app (so redirect_to is same-origin): /healthz,
    // with the server's CSP bypassed to load the library into it. (Playwright's routes do not
    // see the targets of redirects, so a routed page could not be the callback's target.)
    const context = await browser.newContext({ bypassCSP: true });
    const errors = watchConsole(context);
    const app = server.base + "/healthz";
    await context.route(server.base + "/favicon.ico", (route) => route.fulfill({ status: 204 })); // asked for by every plain page
    try {
      const page = await context.newPage();
      await page.goto(app);
      await page.addScriptTag({ path: LIB });
      const url = await page.evaluate((idp) => new Gatehouse.GatehouseClient().authorizeUrl(idp, { transport: "body" }), IDP);
      const parsed = new URL(url);
      assert.equal(parsed.origin + parsed.pathname, `${server.base}/auth/idps/${IDP}/authorize`);
      assert.equal(parsed.searchParams.get("redirect_to"), app);
      assert.equal(parsed.searchParams.get("token_transport"), "body");
      assert.equal(parsed.searchParams.get("link"), null);

      // The page navigates away while evaluate returns: its context may be gone by then.
      await page.evaluate((idp) => new Gatehouse.GatehouseClient().loginWith(idp, { transport: "body" }), IDP).catch(() => undefined);
      await providerLogin(page, users.dave);
      await page.waitForURL((u) => u.href.startsWith(app + "#"));
      assert.match(new URL(page.url()).hash, /^#login_code=/);
      await page.addScriptTag({ path: LIB });
      const result = await page.evaluate(async () => {
        const ret = Gatehouse.takeProviderReturn();
        const left = location.href;
        const gh = new Gatehouse.GatehouseClient();
        const tokens = await gh.exchangeLoginCode(ret.loginCode);
        let second;
        try {
          await gh.exchangeLoginCode(ret.loginCode);
          second = "accepted";
        } catch (err) {
          second = { status: err.status, code: err.code };
        }
        return { ret: { ...ret, loginCode: typeof ret.loginCode }, left, tokens, second, signedIn: gh.authenticated };
      });
      assert.deepEqual(result.ret, { loginCode: "string" });
      assert.equal(result.left, app, "the code left the address bar");
      assert.equal(result.tokens.user.email, users.dave);
      assert.equal(typeof result.tokens.refresh_token, "string");
      assert.deepEqual(claims(result.tokens.access_token).amr, ["fed"]);
      assert.notEqual(result.second, "accepted", "a login code is single use");
      assert.ok(result.second.status >= 400 && result.second.status < 500, JSON.stringify(result.second));
      assert.equal(result.signedIn, false, "exchangeLoginCode hands the tokens over without signing the cookie client in");
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });
});

// The page's own behaviour, with the provider endpoints mocked on a server without providers:
// no buttons without providers, the redirect_to it asks for, every return code readable, the
// address cleaned first, and the Linked accounts section's buttons and refusals.
describe("the account page's provider parts, against mocked endpoints", () => {
  let plain;
  before(async () => {
    if (browser) plain = await startServer(["--access-ttl", "5m"]);
  });
  after(async () => {
    await plain?.stop();
  });

  const ACME = { name: "acme", display_name: "Acme ID" };
  const OTHER = { name: "other", display_name: "Other" };

  /** A context whose GET /auth/idps answers `list`. */
  async function mockedContext(list) {
    const context = await browser.newContext();
    await context.route(plain.base + "/auth/idps", (route) => route.fulfill({ json: { providers: list } }));
    return context;
  }

  test("no providers: no buttons and no Linked accounts", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const user = await createUser(plain.api, uniqueEmail("idp-none"));
    const context = await mockedContext([]);
    let identitiesAsked = 0;
    await context.route(plain.base + "/auth/identities", (route) => (identitiesAsked++, route.fulfill({ json: { identities: [] } })));
    try {
      const page = await context.newPage();
      await page.goto(plain.base + "/account");
      await page.locator("#signin").waitFor({ state: "visible" });
      await page.waitForLoadState("networkidle");
      assert.equal(await page.locator("#idp-signin").isHidden(), true);
      assert.equal(await page.locator("#idp-buttons button").count(), 0);
      await page.getByLabel("Email", { exact: true }).fill(user.email);
      await page.getByLabel("Password", { exact: true }).fill(user.password);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.locator("#account").waitFor({ state: "visible" });
      await page.waitForLoadState("networkidle");
      assert.equal(await page.locator("#identities-section").isHidden(), true);
      assert.equal(identitiesAsked, 0, "nothing to list without providers");
    } finally {
      await context.close();
    }
  });

  test("a provider's button asks for /account?idp=<name>; every return code reads well and leaves no trace in the address", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const context = await mockedContext([ACME]);
    const errors = watchConsole(context);
    let authorize = null;
    await context.route(plain.base + "/auth/idps/acme/authorize?**", (route) => {
      authorize = new URL(route.request().url());
      route.fulfill({ status: 302, headers: { Location: plain.base + "/account?idp=acme#error=account_exists" } });
    });
    try {
      const page = await context.newPage();
      await page.goto(plain.base + "/account");
      const button = page.getByRole("button", { name: "Sign in with Acme ID" });
      await button.waitFor({ state: "visible" });
      await button.click();
      await page.locator("#alert", {
        hasText: "An account with this email already exists. Sign in with your password, then link Acme ID from Linked accounts.",
      }).waitFor();
      assert.equal(authorize.searchParams.get("redirect_to"), plain.base + "/account?idp=acme");
      assert.equal(authorize.searchParams.get("link"), null);
      assert.equal(authorize.searchParams.get("token_transport"), null, "cookie transport");
      assert.equal(page.url(), plain.base + "/account");

      const cases = [
        ["?idp=acme#error=access_denied", "Signing in with Acme ID was cancelled. Try again, or sign in another way."],
        ["?idp=acme&link=1#error=access_denied", "Linking Acme ID was cancelled. Nothing was changed."],
        ["?idp=acme#error=invalid_state", "The sign-in with Acme ID expired or was started in another tab or browser. Please try again."],
        ["?idp=acme#error=provider_error", "Signing in with Acme ID did not work (provider_error). Please try again, or sign in another way."],
        ["?idp=acme&link=1#error=login_required", "To link Acme ID, sign in first, then choose \u201cLink Acme ID\u201d under Linked accounts."],
        ["?idp=acme#error=%3Cb%3Ehi%3C%2Fb%3E", "Signing in with Acme ID did not work. Please try again, or sign in another way."],
        ["#error=account_exists", "An account with this email already exists. Sign in with your password, then link the other service from Linked accounts."],
      ];
      for (const [suffix, message] of cases) {
        await page.goto("about:blank"); // a load of the page, not a same-document fragment change
        await page.goto(plain.base + "/account" + suffix);
        await page.locator("#alert", { hasText: message }).waitFor();
        assert.equal(await page.locator("#alert").textContent(), message, suffix);
        assert.equal(page.url(), plain.base + "/account", `${suffix} left the address bar`);
        await page.locator("#signin").waitFor({ state: "visible" });
        assert.equal(await page.locator("#alert b").count(), 0);
      }

      // A user with a second factor: on to the second-factor step, the token from the fragment.
      await page.goto("about:blank");
      await page.goto(plain.base + "/account?idp=acme#error=mfa_required&mfa_token=tok-123&methods=totp,recovery_code");
      await page.locator("#mfa-step").waitFor({ state: "visible" });
      assert.equal(page.url(), plain.base + "/account");
      assert.equal(await page.locator("#alert").isHidden(), true);
      let verify = null;
      await context.route(plain.base + "/auth/mfa/verify", (route) => {
        verify = JSON.parse(route.request().postData());
        route.fulfill({ status: 401, contentType: "application/problem+json", body: JSON.stringify({ status: 401, code: "invalid_code", detail: "no" }) });
      });
      await page.getByLabel("6-digit code from your authenticator app").fill("123456");
      await page.getByRole("button", { name: "Verify" }).click();
      await page.locator("#alert", { hasText: "That code is not right" }).waitFor();
      assert.deepEqual(verify, { mfa_token: "tok-123", method: "totp", code: "123456" });
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });

  test("Linked accounts: a row per identity, Link for the others, and readable refusals of Unlink", async (t) => {
    if (!browser) return t.skip("no Chromium");
    const user = await createUser(plain.api, uniqueEmail("idp-linked"));
    const context = await mockedContext([ACME, OTHER]);
    const errors = watchConsole(context);
    const identity = { id: "idn-1", provider: "acme", email: "me@acme.example", created_at: "2026-01-02T03:04:05Z" };
    let deleteAnswer = { status: 409, json: { type: "about:blank", title: "Conflict", status: 409, detail: "last", code: "last_login_method" } };
    let list = [identity];
    await context.route(plain.base + "/auth/identities", (route) => route.fulfill({ json: { identities: list } }));
    await context.route(plain.base + "/auth/identities/idn-1", (route) => {
      assert.equal(route.request().method(), "DELETE");
      assert.match(route.request().headers()["authorization"] ?? "", /^Bearer /);
      if (deleteAnswer.status === 204) list = [];
      route.fulfill({ status: deleteAnswer.status, contentType: "application/problem+json", body: deleteAnswer.json ? JSON.stringify(deleteAnswer.json) : "" });
    });
    let linkAuthorize = null;
    await context.route(plain.base + "/auth/idps/other/authorize?**", (route) => {
      linkAuthorize = new URL(route.request().url());
      route.fulfill({ status: 302, headers: { Location: plain.base + "/account?idp=other&link=1#linked=other" } });
    });
    try {
      const page = await context.newPage();
      await page.goto(plain.base + "/account");
      await page.getByLabel("Email", { exact: true }).fill(user.email);
      await page.getByLabel("Password", { exact: true }).fill(user.password);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.locator("#identities-section").waitFor({ state: "visible" });
      await page.locator("#identities tr").first().waitFor();
      assert.equal(await page.locator("#identities tr").count(), 1);
      assert.match(await page.locator("#identities tr").textContent(), /Acme ID.*me@acme\.example/);
      assert.deepEqual(await page.locator("#identity-links button").allTextContents(), ["Link Other"]);

      await page.getByRole("button", { name: "Unlink Acme ID: me@acme.example" }).click();
      await page.locator("#alert", { hasText: "You cannot unlink Acme ID: it is the only way left to sign in to your account." }).waitFor();
      assert.equal(await page.locator("#identities tr").count(), 1);

      deleteAnswer = { status: 204 };
      await page.getByRole("button", { name: "Unlink Acme ID: me@acme.example" }).click();
      await page.locator("#status", { hasText: "Unlinked your Acme ID account me@acme.example." }).waitFor();
      await page.locator("#identities-empty").waitFor({ state: "visible" });
      assert.deepEqual(await page.locator("#identity-links button").allTextContents(), ["Link Acme ID", "Link Other"]);

      // Link: authorize with link=1 and this page as redirect_to; back, it says so.
      await page.getByRole("button", { name: "Link Other" }).click();
      await page.locator("#status", { hasText: "Other is linked to your account" }).waitFor();
      assert.equal(linkAuthorize.searchParams.get("link"), "1");
      assert.equal(linkAuthorize.searchParams.get("redirect_to"), plain.base + "/account?idp=other&link=1");
      assert.equal(page.url(), plain.base + "/account");
      assert.equal(await page.evaluate(() => document.activeElement?.id), "identities-title");
      assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    } finally {
      await context.close();
    }
  });
});
