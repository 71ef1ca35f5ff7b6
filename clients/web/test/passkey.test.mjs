// Passkeys (WebAuthn) in real Chromium against the real binary, with Chromium's virtual
// authenticator (CDP WebAuthn domain: a CTAP2 platform authenticator with resident keys and
// user verification): adding a passkey on the account page, signing in with it and no email,
// a passkey as the second factor after a password, and the refusals: a removed passkey, a
// replayed assertion, an assertion for another challenge, credentials made on another origin.
//
// An IP address is not a valid RP ID, so the server is reached as http://localhost:PORT with
// --public-url on that origin (the RP ID is "localhost"); requests from Node go to 127.0.0.1.
// The first two tests need no passkey endpoints: they check the authenticator plumbing, and
// the page's WebAuthn calls and messages against mocked endpoints.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createUser, launchBrowser, startServer, uniqueEmail, watchConsole, webRoot } from "./helpers.mjs";

const LIB = join(webRoot, "dist", "gatehouse.iife.js");

// Failed requests the page handles: mfa_required and refused passkeys (401), the sign-in
// form's refresh without a session, last_login_method (409).
const EXPECTED = /Failed to load resource: the server responded with a status of (400|401|403|409)/;

let server;
let other; // a second server on another localhost port: another origin, the same RP ID
let browser;

before(async () => {
  server = await startServer(["--access-ttl", "5m"], { host: "localhost" });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await other?.stop();
});

// ------------------------------------------------------------------ helpers

const b64url = (buf) => Buffer.from(buf).toString("base64url");
const fromB64url = (s) => Buffer.from(s, "base64url");
const clientData = (credentialJSON) => JSON.parse(fromB64url(credentialJSON.response.clientDataJSON).toString("utf8"));
const claims = (jwt) => JSON.parse(fromB64url(jwt.split(".")[1]).toString("utf8"));

/** A JSON request from Node to a server (127.0.0.1), optionally with a Bearer token. */
async function api(srv, path, { method = "POST", token, body } = {}) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(srv.api + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: r.status, body: json, text };
}

/** A virtual CTAP2 platform authenticator (resident keys, user verification) for a page. */
async function addAuthenticator(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return {
    async credentials() {
      return (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;
    },
    async clear() {
      await cdp.send("WebAuthn.clearCredentials", { authenticatorId });
    },
  };
}

async function openAccount(context, srv = server) {
  const page = await context.newPage();
  await page.goto(srv.base + "/account");
  await page.locator("#signin, #account").first().waitFor({ state: "visible" });
  return page;
}

/** Fills the sign-in form and submits; resolves to the /auth/login response's body. */
async function submitPassword(page, email, password) {
  await page.locator("#signin").getByLabel("Email", { exact: true }).fill(email);
  await page.locator("#signin").getByLabel("Password", { exact: true }).fill(password);
  const login = page.waitForResponse((r) => new URL(r.url()).pathname === "/auth/login");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  const res = await login;
  await page.locator("#account:visible, #mfa-step:visible").first().waitFor({ state: "visible" });
  return { status: res.status(), body: await res.json() };
}

async function signOut(page) {
  await page.locator("#logout").click();
  await page.locator("#signin").waitFor({ state: "visible" });
}

/** Adds a passkey from the account page's Security section; resolves to the finish answer. */
async function addPasskey(page, name) {
  await page.getByLabel("Passkey name (optional)").fill(name);
  const begin = page.waitForResponse((r) => new URL(r.url()).pathname === "/auth/passkeys/register/begin");
  const finish = page.waitForResponse((r) => new URL(r.url()).pathname === "/auth/passkeys/register/finish");
  await page.getByRole("button", { name: "Add a passkey" }).click();
  const started = await begin;
  assert.equal(started.status(), 200, `register/begin: ${started.status()} ${await started.text()}`);
  const res = await finish;
  const body = await res.json();
  assert.equal(res.status(), 201, JSON.stringify(body));
  await page.locator("#status").getByText(`Passkey \u201c${name}\u201d added.`).waitFor();
  return body.passkey;
}

const FINISH = "/auth/passkeys/login/finish";

/** Clicks a passkey button; resolves to the login/finish request body and the response. */
async function withFinish(page, click) {
  const req = page.waitForRequest((r) => new URL(r.url()).pathname === FINISH);
  const res = page.waitForResponse((r) => new URL(r.url()).pathname === FINISH);
  await click();
  const response = await res;
  return { sent: (await req).postDataJSON(), status: response.status(), body: await response.json() };
}

/** In the page: navigator.credentials.create for server JSON options; the credential's toJSON(). */
function createInPage(page, publicKey) {
  return page.evaluate(async (pk) => {
    const cred = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(pk) });
    return cred.toJSON();
  }, publicKey);
}

/** In the page: navigator.credentials.get for server JSON options; the assertion's toJSON(). */
function getInPage(page, publicKey) {
  return page.evaluate(async (pk) => {
    const cred = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(pk) });
    return cred.toJSON();
  }, publicKey);
}

/** Nothing in web storage or IndexedDB. */
async function assertNothingStored(page) {
  const stored = await page.evaluate(async () => ({
    n: localStorage.length + sessionStorage.length,
    dbs: (await indexedDB.databases()).length,
  }));
  assert.equal(stored.n, 0, "nothing in localStorage or sessionStorage");
  assert.equal(stored.dbs, 0, "no IndexedDB database");
}

const hasRefreshCookie = async (context) => (await context.cookies()).some((c) => c.name === "__Secure-refresh_token");

/** A signed-in page of a new user (password), with a virtual authenticator. */
async function signedInWithAuthenticator(srv = server, tag = "pk") {
  const user = await createUser(srv.api, uniqueEmail(tag));
  const context = await browser.newContext();
  const errors = watchConsole(context);
  const page = await openAccount(context, srv);
  const auth = await addAuthenticator(page);
  const login = await submitPassword(page, user.email, user.password);
  assert.equal(login.status, 200, JSON.stringify(login.body));
  await page.locator("#account").waitFor({ state: "visible" });
  return { user, context, errors, page, auth };
}

// ------------------------------------------------------------------ plumbing (no passkey endpoints needed)

describe("the virtual authenticator and the page's WebAuthn calls", () => {
  test("the virtual authenticator creates and uses a discoverable credential for http://localhost:PORT", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const context = await browser.newContext();
    const page = await openAccount(context);
    assert.equal(new URL(page.url()).hostname, "localhost");
    const auth = await addAuthenticator(page);
    assert.equal(await page.evaluate(() => window.isSecureContext), true, "http://localhost is a secure context");

    const userId = randomBytes(16);
    const challenge = randomBytes(32);
    const created = await createInPage(page, {
      rp: { id: "localhost", name: "Gatehouse test" },
      user: { id: b64url(userId), name: "someone@example.com", displayName: "Someone" },
      challenge: b64url(challenge),
      pubKeyCredParams: [{ type: "public-key", alg: -7 }, { type: "public-key", alg: -257 }],
      authenticatorSelection: { residentKey: "required", userVerification: "required" },
      attestation: "none",
      timeout: 10_000,
    });
    assert.equal(created.type, "public-key");
    assert.equal(created.id, created.rawId);
    assert.ok(created.response.attestationObject, "an attestation object");
    assert.deepEqual(created.response.transports, ["internal"]);
    const cd = clientData(created);
    assert.equal(cd.type, "webauthn.create");
    assert.equal(cd.origin, server.base);
    assert.equal(cd.challenge, b64url(challenge));

    const stored = await auth.credentials();
    assert.equal(stored.length, 1);
    assert.equal(stored[0].rpId, "localhost");
    assert.equal(stored[0].isResidentCredential, true);
    assert.equal(fromB64url(stored[0].credentialId).toString("base64url"), created.id);

    const countBefore = stored[0].signCount;
    // Discoverable: no allowCredentials, the authenticator finds it by the RP ID.
    const challenge2 = randomBytes(32);
    const got = await getInPage(page, { challenge: b64url(challenge2), rpId: "localhost", userVerification: "required", timeout: 10_000 });
    assert.equal(got.id, created.id);
    assert.equal(got.response.userHandle, b64url(userId));
    const gd = clientData(got);
    assert.equal(gd.type, "webauthn.get");
    assert.equal(gd.origin, server.base);
    assert.equal(gd.challenge, b64url(challenge2));
    const flags = fromB64url(got.response.authenticatorData)[32];
    assert.ok(flags & 0x01, "user present");
    assert.ok(flags & 0x04, "user verified");
    assert.ok((await auth.credentials())[0].signCount > countBefore, "the signature counter moved");
    await context.close();
  });

  test("the account page adds a passkey, signs in with one and explains failures (passkey endpoints mocked)", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const { context, errors, page, auth } = await signedInWithAuthenticator(server, "mocked");
    assert.equal(await page.locator("#passkeys-empty").textContent(), "You have no passkeys yet.");

    // The server's part, mocked: what it would answer, and what the page sent it.
    const userId = randomBytes(16);
    const mock = { list: [], exclude: [], sent: {} };
    const problem = (status, code, title) => ({ status, contentType: "application/problem+json", body: JSON.stringify({ type: "about:blank", title, status, code }) });
    await page.route("**/auth/me", async (route) => {
      const res = await route.fetch();
      const json = await res.json();
      json.mfa = { totp: false, ...json.mfa, passkeys: mock.list.length };
      await route.fulfill({ response: res, json });
    });
    await page.route("**/auth/passkeys", (route) => route.fulfill({ json: { passkeys: mock.list } }));
    const regChallenge = randomBytes(32);
    await page.route("**/auth/passkeys/register/begin", (route) => route.fulfill({
      json: {
        publicKey: {
          rp: { id: "localhost", name: "Gatehouse" },
          user: { id: b64url(userId), name: "mocked@example.com", displayName: "Mocked" },
          challenge: b64url(regChallenge),
          pubKeyCredParams: [{ type: "public-key", alg: -7 }],
          excludeCredentials: mock.exclude,
          authenticatorSelection: { residentKey: "required", requireResidentKey: true, userVerification: "preferred" },
          attestation: "none",
          timeout: 5_000,
        },
      },
    }));
    await page.route("**/auth/passkeys/register/finish", (route) => {
      mock.sent.register = route.request().postDataJSON();
      const pk = { id: "pk-1", name: mock.sent.register.name ?? "Passkey", created_at: new Date().toISOString(), last_used_at: null };
      mock.list = [pk];
      return route.fulfill({ status: 201, json: { passkey: pk } });
    });
    let deleteAnswer = problem(409, "last_login_method", "Conflict");
    await page.route("**/auth/passkeys/pk-1", (route) => {
      if (deleteAnswer.status === 204) mock.list = [];
      return route.fulfill(deleteAnswer);
    });

    await addPasskey(page, "Test laptop");
    const reg = mock.sent.register;
    assert.equal(reg.name, "Test laptop");
    assert.deepEqual(Object.keys(reg).sort(), ["credential", "name"]);
    assert.equal(reg.credential.type, "public-key");
    assert.ok(reg.credential.response.attestationObject);
    const rcd = clientData(reg.credential);
    assert.equal(rcd.type, "webauthn.create");
    assert.equal(rcd.challenge, b64url(regChallenge));
    assert.equal(rcd.origin, server.base);
    const row = page.locator("#passkeys tr");
    await row.first().waitFor();
    assert.equal(await row.count(), 1);
    assert.match(await row.textContent(), /Test laptop.*Never/);
    await page.locator("#mfa-status").getByText("also asks for one of your passkeys").waitFor();
    assert.equal((await auth.credentials()).length, 1);

    // The same device again, its credential in excludeCredentials: explained.
    mock.exclude = [{ type: "public-key", id: reg.credential.id }];
    await page.getByRole("button", { name: "Add a passkey" }).click();
    await page.getByRole("alert").getByText("This device already has a passkey for your account.").waitFor();
    assert.equal((await auth.credentials()).length, 1);

    // Removing it: confirmation first; the 409 explained; then removed.
    await page.getByRole("button", { name: "Remove passkey: Test laptop" }).click();
    await page.locator("#passkey-remove").getByText("Remove the passkey \u201cTest laptop\u201d?").waitFor();
    await page.getByRole("button", { name: "Remove passkey", exact: true }).click();
    await page.getByRole("alert").getByText(/only way left to sign in/).waitFor();
    assert.equal(await page.locator("#passkey-remove").isVisible(), false);
    assert.equal(await row.count(), 1);
    deleteAnswer = { status: 204 };
    await page.getByRole("button", { name: "Remove passkey: Test laptop" }).click();
    await page.getByRole("button", { name: "Remove passkey", exact: true }).click();
    await page.locator("#status").getByText("Passkey \u201cTest laptop\u201d removed.").waitFor();
    await page.locator("#passkeys-empty").waitFor({ state: "visible" });

    // Sign in with a passkey, no email: the page sends the assertion for the begin's challenge.
    await signOut(page);
    const loginChallenge = randomBytes(32);
    await page.route("**/auth/passkeys/login/begin", (route) => {
      mock.sent.begin = route.request().postDataJSON();
      return route.fulfill({
        json: { publicKey: { challenge: b64url(loginChallenge), rpId: "localhost", allowCredentials: [], userVerification: "required", timeout: 5_000 }, challenge_id: "ch-1" },
      });
    });
    await page.route("**/auth/passkeys/login/finish", (route) => {
      mock.sent.finish = route.request().postDataJSON();
      return route.fulfill(problem(401, "invalid_credential", "Unauthorized"));
    });
    await page.locator("#email").fill(""); // no email needed
    await page.getByRole("button", { name: "Sign in with a passkey" }).click();
    await page.getByRole("alert").getByText(/This passkey was not accepted/).waitFor();
    assert.deepEqual(mock.sent.begin, {});
    const fin = mock.sent.finish;
    assert.equal(fin.challenge_id, "ch-1");
    assert.equal(fin.mfa_token, undefined);
    assert.equal(fin.credential.id, reg.credential.id);
    assert.equal(fin.credential.response.userHandle, b64url(userId));
    const fcd = clientData(fin.credential);
    assert.equal(fcd.type, "webauthn.get");
    assert.equal(fcd.challenge, b64url(loginChallenge));
    assert.equal(fcd.origin, server.base);
    assert.equal(await page.locator("#signin").isVisible(), true);
    assert.equal(await hasRefreshCookie(context), false);

    // The second-factor step after a password (mocked mfa_required): codes and a passkey.
    await page.route("**/auth/login", (route) => route.fulfill({
      status: 401,
      contentType: "application/problem+json",
      body: JSON.stringify({ title: "Second factor required", status: 401, code: "mfa_required", mfa_token: "mfa-tok", methods: ["totp", "recovery_code", "passkey"] }),
    }));
    await page.locator("#signin").getByLabel("Email", { exact: true }).fill("mocked@example.com");
    await page.locator("#signin").getByLabel("Password", { exact: true }).fill("whatever it is");
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.locator("#mfa-step").waitFor({ state: "visible" });
    assert.equal(await page.locator("#mfa-form").isVisible(), true, "the code form, for the authenticator app");
    await page.getByRole("button", { name: "Use a passkey" }).click();
    await page.getByRole("alert").getByText(/That passkey was not accepted: it is not one of this account/).waitFor();
    assert.deepEqual(mock.sent.begin, { mfa_token: "mfa-tok" });
    assert.equal(mock.sent.finish.mfa_token, "mfa-tok");
    assert.equal(mock.sent.finish.challenge_id, "ch-1");
    assert.equal(await page.locator("#mfa-step").isVisible(), true, "still on the second-factor step");
    await page.locator("#mfa-step").getByRole("button", { name: "Cancel" }).click();
    await page.locator("#signin").waitFor({ state: "visible" });
    await page.unroute("**/auth/login");

    // No passkey on the device: the browser's NotAllowedError, explained.
    await auth.clear();
    await page.getByRole("button", { name: "Sign in with a passkey" }).click();
    await page.getByRole("alert").getByText(/The passkey prompt was cancelled or timed out/).waitFor({ timeout: 20_000 });

    await assertNothingStored(page);
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });
});

// ------------------------------------------------------------------ against the server's passkey endpoints

describe("passkeys against the server", () => {
  test("add a passkey on the account page, sign out, sign in with it and no email: amr has hwk", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const { user, context, errors, page, auth } = await signedInWithAuthenticator(server, "register");

    const pk = await addPasskey(page, "Test laptop");
    assert.equal(pk.name, "Test laptop");
    assert.ok(pk.id && pk.created_at);
    assert.equal(pk.last_used_at ?? null, null);
    const row = page.locator("#passkeys tr");
    await row.first().waitFor();
    assert.match(await row.textContent(), /Test laptop.*Never/);
    await page.locator("#mfa-status").getByText("Two-step sign-in is on").waitFor();
    const stored = await auth.credentials();
    assert.equal(stored.length, 1);
    assert.equal(stored[0].rpId, "localhost");
    assert.equal(stored[0].isResidentCredential, true, "a discoverable credential (residentKey required)");

    // A second passkey on the same device is refused by the browser (excludeCredentials).
    await page.getByRole("button", { name: "Add a passkey" }).click();
    await page.getByRole("alert").getByText("This device already has a passkey for your account.").waitFor();
    assert.equal((await auth.credentials()).length, 1);
    assert.equal(await row.count(), 1);

    await signOut(page);
    await page.locator("#email").fill(""); // no email needed
    const { sent, status, body } = await withFinish(page, () => page.getByRole("button", { name: "Sign in with a passkey" }).click());
    assert.equal(status, 200, JSON.stringify(body));
    assert.ok(sent.challenge_id, "the begin's challenge_id");
    assert.equal(sent.mfa_token, undefined);
    assert.equal(sent.credential.id, b64url(fromB64url(stored[0].credentialId)));
    assert.equal(clientData(sent.credential).origin, server.base);
    const c = claims(body.access_token);
    assert.equal(c.sub, user.user.id);
    assert.ok(c.amr.includes("hwk"), `amr ${JSON.stringify(c.amr)}`);
    assert.ok(c.amr.includes("mfa"), `user verification counts as a second factor: ${JSON.stringify(c.amr)}`);
    assert.ok(!c.amr.includes("pwd"));
    assert.equal(typeof body.csrf_token, "string", "cookie mode");
    assert.equal(body.refresh_token, undefined, "the refresh token is a cookie, not in the body");

    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await page.locator("#user-email").textContent(), user.email);
    assert.ok(await hasRefreshCookie(context));
    await page.locator("#passkeys tr td:nth-child(3) time").waitFor(); // "Last used": a time now, no longer "Never"

    // The session resumes after a reload like any other.
    await page.reload();
    await page.locator("#account").waitFor({ state: "visible" });
    await assertNothingStored(page);
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("a passkey as the second factor after a password", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const { user, context, errors, page } = await signedInWithAuthenticator(server, "second");
    await addPasskey(page, "Phone");
    await signOut(page);

    const login = await submitPassword(page, user.email, user.password);
    assert.equal(login.status, 401);
    assert.equal(login.body.code, "mfa_required");
    assert.ok(login.body.methods.includes("passkey"), `methods ${JSON.stringify(login.body.methods)}`);
    assert.ok(!login.body.methods.includes("totp"));
    await page.locator("#mfa-step").waitFor({ state: "visible" });
    assert.equal(await page.locator("#account").isVisible(), false, "no session before the second factor");
    assert.equal(await hasRefreshCookie(context), false);
    assert.equal(await page.locator("#mfa-form").isVisible(), false, "no code to type: passkey only");

    const { sent, status, body } = await withFinish(page, () => page.getByRole("button", { name: "Use a passkey" }).click());
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(sent.mfa_token, login.body.mfa_token);
    const amr = claims(body.access_token).amr;
    for (const m of ["pwd", "hwk", "mfa"]) assert.ok(amr.includes(m), `amr ${JSON.stringify(amr)} has ${m}`);
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await page.locator("#user-email").textContent(), user.email);
    assert.ok(await hasRefreshCookie(context));

    // The mfa_token was used up with the sign-in.
    const again = await api(server, "/auth/passkeys/login/begin", { body: { mfa_token: login.body.mfa_token } });
    assert.ok(again.status >= 400, `a used mfa_token: ${again.status} ${again.text}`);

    await assertNothingStored(page);
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("a removed passkey is refused at sign-in", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const { context, errors, page, auth } = await signedInWithAuthenticator(server, "removed");
    await addPasskey(page, "Old key");
    await page.getByRole("button", { name: "Remove passkey: Old key" }).click();
    await page.getByRole("button", { name: "Remove passkey", exact: true }).click();
    await page.locator("#status").getByText("Passkey \u201cOld key\u201d removed.").waitFor();
    await page.locator("#passkeys-empty").waitFor({ state: "visible" });
    await page.locator("#mfa-status").getByText("Two-step sign-in is off").waitFor();
    assert.equal((await auth.credentials()).length, 1, "the device still holds the credential");

    await signOut(page);
    const { status, body } = await withFinish(page, () => page.getByRole("button", { name: "Sign in with a passkey" }).click());
    assert.equal(status, 401);
    assert.equal(body.code, "invalid_credential");
    await page.getByRole("alert").getByText(/This passkey was not accepted/).waitFor();
    assert.equal(await page.locator("#signin").isVisible(), true);
    assert.equal(await hasRefreshCookie(context), false);
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("a replayed assertion is refused, with its own challenge_id and with a new one", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const { context, page } = await signedInWithAuthenticator(server, "replay");
    await addPasskey(page, "Laptop");
    await signOut(page);
    const { sent, status } = await withFinish(page, () => page.getByRole("button", { name: "Sign in with a passkey" }).click());
    assert.equal(status, 200);
    await page.locator("#account").waitFor({ state: "visible" });

    const same = await api(server, FINISH, { body: { ...sent, token_transport: "body" } });
    assert.equal(same.status, 401, same.text);
    assert.equal(same.body.code, "invalid_credential");

    const begin = await api(server, "/auth/passkeys/login/begin", { body: {} });
    assert.equal(begin.status, 200, begin.text);
    assert.notEqual(begin.body.challenge_id, sent.challenge_id);
    const fresh = await api(server, FINISH, { body: { ...sent, challenge_id: begin.body.challenge_id, token_transport: "body" } });
    assert.equal(fresh.status, 401, fresh.text);
    assert.equal(fresh.body.code, "invalid_credential");
    await context.close();
  });

  test("an assertion made for one challenge and finished with another is refused", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const { context, page } = await signedInWithAuthenticator(server, "challenge");
    await addPasskey(page, "Laptop");
    await signOut(page);

    const a = await api(server, "/auth/passkeys/login/begin", { body: {} });
    assert.equal(a.status, 200, a.text);
    assert.ok(a.body.challenge_id && a.body.publicKey.challenge);
    assert.deepEqual(a.body.publicKey.allowCredentials ?? [], [], "any discoverable passkey");
    const assertion = await getInPage(page, a.body.publicKey);
    assert.equal(clientData(assertion).challenge, a.body.publicKey.challenge);
    const b = await api(server, "/auth/passkeys/login/begin", { body: {} });
    assert.equal(b.status, 200, b.text);
    assert.notEqual(b.body.publicKey.challenge, a.body.publicKey.challenge);

    const wrong = await api(server, FINISH, { body: { challenge_id: b.body.challenge_id, credential: assertion, token_transport: "body" } });
    assert.equal(wrong.status, 401, wrong.text);
    assert.equal(wrong.body.code, "invalid_credential");
    // The same assertion with its own challenge signs in: only the challenge was wrong.
    const right = await api(server, FINISH, { body: { challenge_id: a.body.challenge_id, credential: assertion, token_transport: "body" } });
    assert.equal(right.status, 200, right.text);
    assert.ok(claims(right.body.access_token).amr.includes("hwk"));
    await context.close();
  });

  test("credentials and assertions made on another origin are refused", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    other ??= await startServer([], { host: "localhost" });
    assert.notEqual(other.base, server.base);

    // A passkey made on the other server's account page (origin http://localhost:OTHER, the
    // same RP ID "localhost", so the authenticator offers it here too).
    const { context, errors, page, auth } = await signedInWithAuthenticator(other, "elsewhere");
    await addPasskey(page, "Other site");
    assert.equal((await auth.credentials()).length, 1);
    await signOut(page);

    // Used here: unknown to this server.
    await page.goto(server.base + "/account");
    await page.locator("#signin").waitFor({ state: "visible" });
    const foreign = await withFinish(page, () => page.getByRole("button", { name: "Sign in with a passkey" }).click());
    assert.equal(foreign.status, 401);
    assert.equal(foreign.body.code, "invalid_credential");
    assert.equal(clientData(foreign.sent.credential).origin, server.base);
    await page.getByRole("alert").getByText(/This passkey was not accepted/).waitFor();

    // A passkey of this server's user, asserted on the other origin for this server's challenge.
    await auth.clear();
    const user = await createUser(server.api, uniqueEmail("here"));
    assert.equal((await submitPassword(page, user.email, user.password)).status, 200);
    await addPasskey(page, "This site");
    await signOut(page);
    const begin = await api(server, "/auth/passkeys/login/begin", { body: {} });
    assert.equal(begin.status, 200, begin.text);
    await page.goto(other.base + "/account");
    await page.locator("#signin").waitFor({ state: "visible" });
    const onOther = await getInPage(page, begin.body.publicKey);
    assert.equal(clientData(onOther).origin, other.base);
    const wrongOrigin = await api(server, FINISH, { body: { challenge_id: begin.body.challenge_id, credential: onOther, token_transport: "body" } });
    assert.equal(wrongOrigin.status, 401, wrongOrigin.text);
    assert.equal(wrongOrigin.body.code, "invalid_credential");

    // The same passkey on this origin signs in (so only the origin was wrong).
    await page.goto(server.base + "/account");
    await page.locator("#signin").waitFor({ state: "visible" });
    const begin2 = await api(server, "/auth/passkeys/login/begin", { body: {} });
    const here = await getInPage(page, begin2.body.publicKey);
    const ok = await api(server, FINISH, { body: { challenge_id: begin2.body.challenge_id, credential: here, token_transport: "body" } });
    assert.equal(ok.status, 200, ok.text);
    const token = ok.body.access_token;

    // A registration for this server made on the other origin is refused, and nothing is added.
    await auth.clear();
    const reg = await api(server, "/auth/passkeys/register/begin", { token, body: {} });
    assert.equal(reg.status, 200, reg.text);
    assert.equal(reg.body.publicKey.authenticatorSelection?.residentKey, "required");
    assert.equal(reg.body.publicKey.excludeCredentials?.length, 1, "this user's passkey is excluded");
    await page.goto(other.base + "/account");
    await page.locator("#signin").waitFor({ state: "visible" });
    const made = await createInPage(page, reg.body.publicKey);
    assert.equal(clientData(made).origin, other.base);
    const fin = await api(server, "/auth/passkeys/register/finish", { token, body: { credential: made, name: "Sneaky" } });
    assert.equal(fin.status, 400, fin.text);
    assert.equal(fin.body.code, "invalid_credential");
    const list = await api(server, "/auth/passkeys", { method: "GET", token });
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.body.passkeys.map((p) => p.name), ["This site"]);

    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });
});

describe("client library: passkeys", () => {
  /** Runs a client method in the page; resolves to { ok, value } or { ok: false, error }. */
  const call = (page, src, args) =>
    page.evaluate(async ([src, args]) => {
      try {
        // eslint-disable-next-line no-new-func
        const value = await new Function("gh", "args", `return (${src})(gh, args)`)(window.gh, args);
        return { ok: true, value };
      } catch (e) {
        return { ok: false, error: { name: e.name, code: e.code, status: e.status, mfaToken: e.mfaToken, methods: e.methods } };
      }
    }, [src, args]);

  test("registerPasskey, listPasskeys, signInWithPasskey, verifyMfaWithPasskey, deletePasskey; without the JSON helpers too", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const context = await browser.newContext();
    const errors = watchConsole(context);
    await context.route(server.base + "/__blank", (route) =>
      route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>blank</title>" }));
    const page = await context.newPage();
    await page.goto(server.base + "/__blank");
    await page.addScriptTag({ path: LIB });
    await page.evaluate(() => (window.gh = new window.Gatehouse.GatehouseClient()));
    const auth = await addAuthenticator(page);
    const email = uniqueEmail("lib");
    const password = "correct horse battery staple";

    assert.equal(await page.evaluate(() => window.Gatehouse.supportsPasskeys()), true);
    assert.equal((await call(page, "(gh, [e, p]) => gh.signup(e, p)", [email, password])).ok, true);
    const added = await call(page, "(gh) => gh.registerPasskey('  Lib key  ')");
    assert.equal(added.ok, true, JSON.stringify(added));
    assert.equal(added.value.name, "Lib key", "the name is trimmed");
    const listed = await call(page, "(gh) => gh.listPasskeys()");
    assert.deepEqual(listed.value.map((p) => [p.id, p.name]), [[added.value.id, "Lib key"]]);
    assert.deepEqual(await call(page, "(gh) => gh.mfaStatus()"), { ok: true, value: { totp: false, passkeys: 1 } });
    const twice = await call(page, "(gh) => gh.registerPasskey()");
    assert.deepEqual([twice.ok, twice.error?.code, twice.error?.status], [false, "passkey_exists", 0]);

    // Sign in with it, no email; then as the second factor after the password.
    await call(page, "(gh) => gh.logout()");
    const signedIn = await call(page, "async (gh) => { const u = await gh.signInWithPasskey(); return [u.email, gh.authenticated]; }");
    assert.deepEqual(signedIn, { ok: true, value: [email, true] });
    await call(page, "(gh) => gh.logout()");
    const first = await call(page, "(gh, [e, p]) => gh.login(e, p)", [email, password]);
    assert.equal(first.error?.code, "mfa_required");
    assert.ok(first.error.methods.includes("passkey"));
    const second = await call(page, "async (gh, t) => (await gh.verifyMfaWithPasskey(t)).email", first.error.mfaToken);
    assert.deepEqual(second, { ok: true, value: email });

    // Removed: gone from the list, and refused at sign-in.
    assert.equal((await call(page, "(gh, id) => gh.deletePasskey(id)", added.value.id)).ok, true);
    assert.deepEqual((await call(page, "(gh) => gh.listPasskeys()")).value, []);
    await call(page, "(gh) => gh.logout()");
    const refused = await call(page, "(gh) => gh.signInWithPasskey()");
    assert.deepEqual([refused.error?.code, refused.error?.status], ["invalid_credential", 401]);

    // A browser without parseCreationOptionsFromJSON, parseRequestOptionsFromJSON and toJSON:
    // the client converts by hand, and the server accepts the result.
    await auth.clear();
    await page.evaluate(() => {
      delete PublicKeyCredential.parseCreationOptionsFromJSON;
      delete PublicKeyCredential.parseRequestOptionsFromJSON;
      delete PublicKeyCredential.prototype.toJSON;
    });
    assert.equal(await page.evaluate(() => typeof PublicKeyCredential.parseRequestOptionsFromJSON), "undefined");
    assert.equal((await call(page, "(gh, [e, p]) => gh.login(e, p)", [email, password])).ok, true);
    const fallback = await call(page, "(gh) => gh.registerPasskey('Fallback')");
    assert.equal(fallback.ok, true, JSON.stringify(fallback));
    await call(page, "(gh) => gh.logout()");
    assert.deepEqual(await call(page, "async (gh) => (await gh.signInWithPasskey()).email"), { ok: true, value: email });

    // Cancelled (no passkey on the device): a GatehouseError, status 0.
    await call(page, "(gh) => gh.logout()");
    await auth.clear();
    const cancelled = await call(page, "(gh) => gh.signInWithPasskey()");
    assert.deepEqual([cancelled.error?.name, cancelled.error?.code, cancelled.error?.status], ["GatehouseError", "passkey_cancelled", 0]);

    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });
});
