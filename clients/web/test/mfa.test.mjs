// Second factors (TOTP and recovery codes) in real Chromium against the real binary: setting
// up an authenticator app from the account page (QR code, key, confirmation, recovery codes),
// signing in with a code or a recovery code after a password or a mailed code or link, new
// recovery codes, turning it off; and the client library's MFA methods. The test computes the
// codes itself (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits). A code is accepted once, so every
// code a test sends is of a later step than the one before (waiting for the next step when the
// step after the current one is used up).
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import jsQR from "jsqr";
import {
  createUser, launchBrowser, mailCode, mailLink, readMails, sleep, startServer, uniqueEmail, waitForMail, watchConsole, webRoot,
} from "./helpers.mjs";

const LIB = join(webRoot, "dist", "gatehouse.iife.js");
// Failed requests the page handles: mfa_required and wrong codes (401), the sign-in form's
// refresh without a session, a used link.
const EXPECTED = /Failed to load resource: the server responded with a status of (400|401|403|409)/;

// ------------------------------------------------------------------ RFC 6238

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

function base32Decode(s) {
  const clean = s.replace(/[\s=]/g, "").toUpperCase();
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const v = BASE32.indexOf(ch);
    if (v < 0) throw new Error(`not base32: ${JSON.stringify(s)}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 4226 HOTP, 6 digits, HMAC-SHA1. */
function hotp(key, counter) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac("sha1", key).update(msg).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const bin = ((mac[off] & 0x7f) << 24) | (mac[off + 1] << 16) | (mac[off + 2] << 8) | mac[off + 3];
  return String(bin % 1_000_000).padStart(6, "0");
}

const STEP_MS = 30_000;
const stepNow = () => Math.floor(Date.now() / STEP_MS);

/** An authenticator app for one secret: hands out codes of ever later steps. */
class Authenticator {
  constructor(secret) {
    this.key = base32Decode(secret);
    this.last = -Infinity;
  }
  /** A code not used before: the current step's, else the next step's (accepted as one
   * step of drift), else waits for the clock to move on. */
  async code() {
    for (;;) {
      const now = stepNow();
      const step = Math.max(this.last + 1, now);
      if (step <= now + 1) {
        this.last = step;
        return hotp(this.key, step);
      }
      await sleep((now + 1) * STEP_MS - Date.now() + 100);
    }
  }
  /** A 6-digit code that is wrong for every step the server accepts now. */
  wrongCode() {
    const now = stepNow();
    const valid = new Set([-2, -1, 0, 1, 2].map((d) => hotp(this.key, now + d)));
    for (const c of ["000000", "111111", "222222", "333333", "444444", "555555"]) if (!valid.has(c)) return c;
    throw new Error("unreachable");
  }
}

test("the test's TOTP matches RFC 6238's SHA-1 vectors", () => {
  const key = Buffer.from("12345678901234567890");
  // RFC 6238 Appendix B, truncated to 6 digits.
  assert.equal(hotp(key, Math.floor(59 / 30)), "287082");
  assert.equal(hotp(key, Math.floor(1111111109 / 30)), "081804");
  assert.equal(hotp(key, Math.floor(1234567890 / 30)), "005924");
  assert.equal(hotp(key, Math.floor(20000000000 / 30)), "353130");
  assert.deepEqual(base32Decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), key);
});

// ------------------------------------------------------------------ server and API helpers

let server;
let browser;

before(async () => {
  server = await startServer(["--access-ttl", "5m"], { mail: true });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function api(path, { method = "POST", token, body } = {}) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(server.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: r.status, body: json, text };
}

/** Signs in through the API in body mode; for a user with a second factor, gives it. */
async function apiSession(user, auth) {
  const r = await api("/auth/login", { body: { email: user.email, password: user.password, token_transport: "body" } });
  if (r.status === 200) return r.body.access_token;
  assert.equal(r.status, 401, r.text);
  assert.equal(r.body.code, "mfa_required", r.text);
  const v = await api("/auth/mfa/verify", {
    body: { mfa_token: r.body.mfa_token, method: "totp", code: await auth.code(), token_transport: "body" },
  });
  assert.equal(v.status, 200, v.text);
  return v.body.access_token;
}

/** Turns TOTP on for a user through the API; returns its authenticator and recovery codes. */
async function apiEnrol(user) {
  const token = await apiSession(user);
  const start = await api("/auth/mfa/totp", { token, body: { current_password: user.password } });
  assert.equal(start.status, 200, start.text);
  const auth = new Authenticator(start.body.secret);
  const confirm = await api("/auth/mfa/totp/confirm", { token, body: { code: await auth.code() } });
  assert.equal(confirm.status, 200, confirm.text);
  assert.equal(confirm.body.recovery_codes.length, 10);
  await api("/auth/logout?scope=local", { token });
  return { auth, recoveryCodes: confirm.body.recovery_codes };
}

/** GET /auth/me's mfa member, for a fresh API session of the user. */
async function mfaOf(user, auth) {
  const token = await apiSession(user, auth);
  const me = await api("/auth/me", { method: "GET", token });
  assert.equal(me.status, 200, me.text);
  await api("/auth/logout?scope=local", { token });
  return me.body.mfa;
}

// ------------------------------------------------------------------ page helpers

async function newContext(options = {}) {
  return browser.newContext(options);
}

async function openAccount(context) {
  const page = await context.newPage();
  await page.goto(server.base + "/account");
  await page.locator("#signin, #account").first().waitFor({ state: "visible" });
  return page;
}

/** Fills the sign-in form and submits; resolves to the mfa_token the server answered, if any. */
async function submitPassword(page, email, password) {
  await page.getByLabel("Email", { exact: true }).fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  const login = page.waitForResponse((r) => new URL(r.url()).pathname === "/auth/login");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  const res = await login;
  await page.locator("#account:visible, #mfa-step:visible").first().waitFor({ state: "visible" });
  if (res.status() !== 401) return null;
  const body = await res.json();
  assert.equal(body.code, "mfa_required");
  assert.deepEqual([...body.methods].sort(), ["recovery_code", "totp"]);
  return body.mfa_token;
}

async function signOut(page) {
  await page.locator("#logout").click();
  await page.locator("#signin").waitFor({ state: "visible" });
}

/** Nothing in web storage, and the mfa_token (if given) nowhere the page keeps state. */
async function assertNothingStored(page, context, secretsToHide = []) {
  const stored = await page.evaluate(async () => ({
    n: localStorage.length + sessionStorage.length,
    dbs: (await indexedDB.databases()).length,
    html: document.documentElement.outerHTML,
    cookie: document.cookie,
    href: location.href,
  }));
  assert.equal(stored.n, 0, "nothing in localStorage or sessionStorage");
  assert.equal(stored.dbs, 0, "no IndexedDB database");
  const cookies = JSON.stringify(await context.cookies());
  for (const s of secretsToHide) {
    assert.ok(!stored.html.includes(s), "not in the document");
    assert.ok(!stored.cookie.includes(s) && !cookies.includes(s), "not in a cookie");
    assert.ok(!stored.href.includes(s), "not in the address");
  }
}

const alertText = (page) => page.getByRole("alert").textContent();

/** The TOTP code field of the second-factor step, its submit button. */
async function giveCode(page, label, code) {
  await page.locator("#mfa-step").getByLabel(label, { exact: true }).fill(code);
  await page.locator("#mfa-step").getByRole("button", { name: "Verify" }).click();
}

/** Decodes the QR code drawn in a canvas of the page. */
async function readQr(page, selector) {
  const img = await page.$eval(selector, (c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height);
    return { w: c.width, h: c.height, data: Array.from(d.data) };
  });
  const qr = jsQR(Uint8ClampedArray.from(img.data), img.w, img.h);
  return qr ? qr.data : null;
}

// ------------------------------------------------------------------ tests

describe("second factors on the account page", () => {
  test("set up an authenticator app: password, QR code and key, confirmation, recovery codes to copy and download", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("enrol"));
    const context = await newContext({ permissions: ["clipboard-read", "clipboard-write"] });
    const errors = watchConsole(context);
    const page = await openAccount(context);
    assert.equal(await submitPassword(page, user.email, user.password), null, "no second factor yet");

    const security = page.locator("#account");
    await page.locator("#mfa-status").getByText("Two-step sign-in is off").waitFor();
    assert.equal(await page.getByRole("button", { name: "Turn off" }).isVisible(), false);

    // A wrong password is explained and nothing starts.
    await page.getByRole("button", { name: "Set up an authenticator app" }).click();
    const pwForm = page.locator("#totp-password-form");
    await pwForm.getByLabel("Your password", { exact: true }).fill("not my password at all");
    await pwForm.getByRole("button", { name: "Continue" }).click();
    await page.getByRole("alert").getByText("Your password is not correct.").waitFor();
    assert.equal(await page.locator("#totp-enrol").isVisible(), false);

    await pwForm.getByLabel("Your password", { exact: true }).fill(user.password);
    await pwForm.getByRole("button", { name: "Continue" }).click();
    await page.locator("#totp-enrol").waitFor({ state: "visible" });
    assert.equal(await pwForm.getByLabel("Your password", { exact: true }).inputValue(), "", "the password field is cleared");

    // The key as text, and the QR code drawn into a canvas of nonzero size that decodes to
    // the otpauth URI with the same secret.
    const secret = (await page.locator("#totp-secret").textContent()).replace(/\s+/g, "");
    assert.match(secret, /^[A-Z2-7]{32,}$/, "a base32 secret of at least 160 bits, without padding");
    const canvas = page.locator("#totp-qr canvas");
    await canvas.waitFor({ state: "visible" });
    const box = await canvas.boundingBox();
    assert.ok(box && box.width > 50 && box.height > 50, `the QR code has a size: ${JSON.stringify(box)}`);
    assert.equal(await canvas.getAttribute("role"), "img");
    assert.ok(await canvas.getAttribute("aria-label"));
    const uri = await readQr(page, "#totp-qr canvas");
    assert.ok(uri, "the QR code decodes");
    assert.match(uri, /^otpauth:\/\/totp\//);
    const parsed = new URL(uri);
    assert.equal(parsed.searchParams.get("secret"), secret);
    assert.ok(parsed.searchParams.get("issuer"), "the URI names the issuer");
    assert.ok(decodeURIComponent(parsed.pathname).includes(user.email), `the label names the account: ${uri}`);

    // A wrong code is explained; the right one turns it on and shows the recovery codes once.
    const auth = new Authenticator(secret);
    const enrol = page.locator("#totp-enrol");
    await enrol.getByLabel("6-digit code from the app").fill(auth.wrongCode());
    await enrol.getByRole("button", { name: "Turn on" }).click();
    await page.getByRole("alert").getByText(/That code is not right/).waitFor();
    await enrol.getByLabel("6-digit code from the app").fill(await auth.code());
    await enrol.getByRole("button", { name: "Turn on" }).click();
    await page.locator("#recovery-panel").waitFor({ state: "visible" });
    const codes = (await page.locator("#recovery-codes li").allTextContents()).map((s) => s.trim());
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    for (const c of codes) assert.ok(c.length >= 6 && !/\s/.test(c), `recovery code ${c}`);
    assert.equal(await page.locator("#totp-enrol").isVisible(), false);
    assert.equal(await page.locator("#totp-secret").textContent(), "", "the key leaves the page");
    await page.locator("#mfa-status").getByText("Two-step sign-in is on").waitFor();

    // Copy: the ten codes, one a line.
    await page.getByRole("button", { name: "Copy", exact: true }).click();
    await page.locator("#status").getByText("Recovery codes copied.").waitFor();
    const clip = await page.evaluate(() => navigator.clipboard.readText());
    assert.deepEqual(clip.trim().split("\n"), codes);

    // Download: a .txt with the ten codes.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download", exact: true }).click(),
    ]);
    assert.match(download.suggestedFilename(), /\.txt$/);
    const text = await readFile(await download.path(), "utf8");
    for (const c of codes) assert.ok(text.split("\n").includes(c), `the file lists ${c}`);
    assert.ok(text.includes(user.email));

    // "I saved them": the codes leave the page for good.
    await page.getByRole("button", { name: "I saved them" }).click();
    assert.equal(await page.locator("#recovery-panel").isVisible(), false);
    assert.equal(await page.locator("#recovery-codes li").count(), 0);
    assert.equal(await security.getByRole("button", { name: "Turn off" }).isVisible(), true);
    assert.equal(await security.getByRole("button", { name: "New recovery codes" }).isVisible(), true);
    assert.equal(await security.getByRole("button", { name: "Set up an authenticator app" }).isVisible(), false);

    // The status survives a reload (it comes from /auth/me), and the server agrees.
    await page.reload();
    await page.locator("#mfa-status").getByText("Two-step sign-in is on").waitFor();
    assert.deepEqual(await mfaOf(user, auth), { totp: true, passkeys: 0 });

    await assertNothingStored(page, context, [secret]);
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("sign in with password, then the 6-digit code; a wrong code is explained", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("signin-totp"));
    const { auth } = await apiEnrol(user);
    const context = await newContext();
    const errors = watchConsole(context);
    const page = await openAccount(context);

    const mfaToken = await submitPassword(page, user.email, user.password);
    assert.ok(mfaToken, "the server asked for the second factor");
    await page.locator("#mfa-step").waitFor({ state: "visible" });
    assert.equal(await page.locator("#account").isVisible(), false, "no session before the second factor");
    assert.equal((await context.cookies()).some((c) => c.name === "__Secure-refresh_token"), false, "no refresh cookie yet");
    assert.equal(await page.getByLabel("Password", { exact: true }).inputValue(), "", "the password left the form");
    // The code field has the focus, and the mfa_token is in memory only.
    assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), "mfa-code");
    await assertNothingStored(page, context, [mfaToken]);

    await giveCode(page, "6-digit code from your authenticator app", auth.wrongCode());
    await page.getByRole("alert").getByText(/That code is not right/).waitFor();
    assert.equal(await page.locator("#mfa-step").isVisible(), true);

    await giveCode(page, "6-digit code from your authenticator app", await auth.code());
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await page.locator("#user-email").textContent(), user.email);
    assert.match(await page.locator("#status").textContent(), /Signed in as/);
    await page.locator("#mfa-status").getByText("Two-step sign-in is on").waitFor();
    assert.ok((await context.cookies()).some((c) => c.name === "__Secure-refresh_token"), "a cookie-mode session");

    // The session resumes after a reload like any other.
    await page.reload();
    await page.locator("#account").waitFor({ state: "visible" });
    await assertNothingStored(page, context, [mfaToken]);

    // Cancel on the second-factor step goes back to the sign-in form.
    await signOut(page);
    await submitPassword(page, user.email, user.password);
    await page.locator("#mfa-step").getByRole("button", { name: "Cancel" }).click();
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("sign in with a recovery code through \u201cUse a recovery code\u201d; a used one is refused", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("signin-recovery"));
    const { recoveryCodes } = await apiEnrol(user);
    const context = await newContext();
    const errors = watchConsole(context);
    const page = await openAccount(context);

    await submitPassword(page, user.email, user.password);
    await page.locator("#mfa-step").getByRole("button", { name: "Use a recovery code" }).click();
    assert.equal(await page.locator("#mfa-step").getByLabel("6-digit code from your authenticator app").isVisible(), false);
    await giveCode(page, "Recovery code", recoveryCodes[0]);
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await page.locator("#user-email").textContent(), user.email);

    // The same recovery code a second time: refused, readably.
    await signOut(page);
    await submitPassword(page, user.email, user.password);
    await page.locator("#mfa-step").getByRole("button", { name: "Use a recovery code" }).click();
    await giveCode(page, "Recovery code", recoveryCodes[0]);
    await page.getByRole("alert").getByText("That recovery code is not right, or it was already used.").waitFor();
    assert.equal(await page.locator("#account").isVisible(), false);
    // Switching back offers the app's code again; another recovery code works.
    await page.locator("#mfa-step").getByRole("button", { name: "Use your authenticator app" }).click();
    assert.equal(await page.locator("#mfa-step").getByLabel("6-digit code from your authenticator app").isVisible(), true);
    await page.locator("#mfa-step").getByRole("button", { name: "Use a recovery code" }).click();
    await giveCode(page, "Recovery code", recoveryCodes[1]);
    await page.locator("#account").waitFor({ state: "visible" });

    await assertNothingStored(page, context, recoveryCodes);
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("the mailed sign-in code and link ask for the second factor too", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("magic-mfa"));
    const { auth, recoveryCodes } = await apiEnrol(user);
    const context = await newContext();
    const errors = watchConsole(context);
    const page = await openAccount(context);

    // The 6-digit mailed code, then the TOTP code.
    let seen = readMails(server.mailDir).map((m) => m.file);
    await page.getByLabel("Email", { exact: true }).fill(user.email);
    await page.getByRole("button", { name: "Email me a sign-in link" }).click();
    await page.locator("#code-entry").waitFor({ state: "visible" });
    let mail = await waitForMail(server.mailDir, { to: user.email, contains: "/account/magic-link#token=", seen });
    await page.locator("#code-entry").getByLabel("6-digit code").fill(mailCode(mail));
    await page.locator("#code-entry").getByRole("button", { name: "Continue" }).click();
    await page.locator("#mfa-step").waitFor({ state: "visible" });
    assert.equal(await page.locator("#account").isVisible(), false);
    await giveCode(page, "6-digit code from your authenticator app", await auth.code());
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await page.locator("#user-email").textContent(), user.email);

    // The mailed link, then a recovery code.
    await signOut(page);
    seen = readMails(server.mailDir).map((m) => m.file);
    await page.getByLabel("Email", { exact: true }).fill(user.email);
    await page.getByRole("button", { name: "Email me a sign-in link" }).click();
    await page.locator("#code-entry").waitFor({ state: "visible" });
    mail = await waitForMail(server.mailDir, { to: user.email, contains: "/account/magic-link#token=", seen });
    await page.goto(mailLink(mail, server.base, "magic-link"));
    await page.locator("#mfa-step").waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => location.href), server.base + "/account", "the link's token left the address bar");
    await page.locator("#mfa-step").getByRole("button", { name: "Use a recovery code" }).click();
    await giveCode(page, "Recovery code", recoveryCodes[0]);
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await page.locator("#user-email").textContent(), user.email);

    await assertNothingStored(page, context);
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("new recovery codes and turning it off from the account page", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("manage"));
    const { auth, recoveryCodes: oldCodes } = await apiEnrol(user);
    const context = await newContext();
    const errors = watchConsole(context);
    const page = await openAccount(context);
    await submitPassword(page, user.email, user.password);
    await page.locator("#mfa-step").getByRole("button", { name: "Use a recovery code" }).click();
    await giveCode(page, "Recovery code", oldCodes[0]);
    await page.locator("#account").waitFor({ state: "visible" });
    await page.locator("#mfa-status").getByText("Two-step sign-in is on").waitFor();

    // New recovery codes, with a code from the app; a wrong one first.
    await page.getByRole("button", { name: "New recovery codes" }).click();
    const form = page.locator("#mfa-code-form");
    await form.getByLabel("6-digit code from your authenticator app").fill(auth.wrongCode());
    await form.getByRole("button", { name: "Get new codes" }).click();
    await page.getByRole("alert").getByText(/That code is not right/).waitFor();
    await form.getByLabel("6-digit code from your authenticator app").fill(await auth.code());
    await form.getByRole("button", { name: "Get new codes" }).click();
    await page.locator("#recovery-panel").waitFor({ state: "visible" });
    const newCodes = (await page.locator("#recovery-codes li").allTextContents()).map((s) => s.trim());
    assert.equal(newCodes.length, 10);
    for (const c of newCodes) assert.ok(!oldCodes.includes(c));
    await page.getByRole("button", { name: "I saved them" }).click();

    // The old codes died: an API sign-in with one is refused, with a new one it works.
    const login = await api("/auth/login", { body: { email: user.email, password: user.password, token_transport: "body" } });
    assert.equal(login.body.code, "mfa_required");
    const old = await api("/auth/mfa/verify", { body: { mfa_token: login.body.mfa_token, method: "recovery_code", code: oldCodes[1] } });
    assert.equal(old.status, 401);
    assert.equal(old.body.code, "invalid_code");
    const fresh = await api("/auth/mfa/verify", {
      body: { mfa_token: login.body.mfa_token, method: "recovery_code", code: newCodes[0], token_transport: "body" },
    });
    assert.equal(fresh.status, 200, fresh.text);
    await api("/auth/logout?scope=local", { token: fresh.body.access_token });

    // Turn off, with a recovery code (a wrong code first).
    await page.getByRole("button", { name: "Turn off" }).click();
    const label = "A code from your authenticator app, or a recovery code";
    await form.getByLabel(label).fill(auth.wrongCode());
    await form.getByRole("button", { name: "Turn off" }).click();
    await page.getByRole("alert").getByText(/That code is not right/).waitFor();
    await form.getByLabel(label).fill(newCodes[1]);
    await form.getByRole("button", { name: "Turn off" }).click();
    await page.locator("#mfa-status").getByText("Two-step sign-in is off").waitFor();
    await page.getByRole("button", { name: "Set up an authenticator app" }).waitFor();
    assert.deepEqual(await mfaOf(user), { totp: false, passkeys: 0 });

    // The password alone signs in again.
    await signOut(page);
    assert.equal(await submitPassword(page, user.email, user.password), null);
    await page.locator("#account").waitFor({ state: "visible" });

    await assertNothingStored(page, context);
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("turn off with a code from the app", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("off-totp"));
    const { auth } = await apiEnrol(user);
    const context = await newContext();
    const errors = watchConsole(context);
    const page = await openAccount(context);
    await submitPassword(page, user.email, user.password);
    await giveCode(page, "6-digit code from your authenticator app", await auth.code());
    await page.locator("#account").waitFor({ state: "visible" });
    await page.getByRole("button", { name: "Turn off" }).click();
    const form = page.locator("#mfa-code-form");
    await form.getByLabel("A code from your authenticator app, or a recovery code").fill(await auth.code());
    await form.getByRole("button", { name: "Turn off" }).click();
    await page.locator("#mfa-status").getByText("Two-step sign-in is off").waitFor();
    assert.deepEqual(await mfaOf(user), { totp: false, passkeys: 0 });
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });
});

describe("client library: second factors", () => {
  async function openTab(context) {
    await context.route(server.base + "/__blank", (route) =>
      route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>blank</title>" }));
    const page = await context.newPage();
    await page.goto(server.base + "/__blank");
    await page.addScriptTag({ path: LIB });
    await page.evaluate(() => {
      window.events = [];
      window.gh = new window.Gatehouse.GatehouseClient();
      window.gh.on("login", ({ user }) => window.events.push("login:" + user.email));
      window.gh.on("logout", ({ reason }) => window.events.push("logout:" + reason));
    });
    return page;
  }

  /** Runs a client method in the page; resolves to { ok, value } or { ok: false, error }. */
  const call = (page, fn, args) =>
    page.evaluate(async ([src, args]) => {
      try {
        // eslint-disable-next-line no-new-func
        const value = await new Function("gh", "args", `return (${src})(gh, args)`)(window.gh, args);
        return { ok: true, value };
      } catch (e) {
        return {
          ok: false,
          error: {
            name: e.name, code: e.code, status: e.status, mfaToken: e.mfaToken, methods: e.methods,
            isGatehouseError: e instanceof window.Gatehouse.GatehouseError,
            isMfaRequired: e instanceof window.Gatehouse.MfaRequiredError,
          },
        };
      }
    }, [fn.toString(), args]);

  test("enrol, MfaRequiredError from login, verifyMfa signs in (both tabs), new recovery codes, disable", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("lib-mfa"));
    const context = await newContext();
    const tab = await openTab(context);
    const other = await openTab(context);

    assert.ok((await call(tab, (gh, [e, p]) => gh.login(e, p).then((u) => u.email), [user.email, user.password])).ok);
    assert.deepEqual((await call(tab, (gh) => gh.mfaStatus())).value, { totp: false, passkeys: 0 });

    const wrongPw = await call(tab, (gh) => gh.startTotpEnrolment("wrong password here"));
    assert.equal(wrongPw.error.code, "invalid_credentials");
    assert.equal(wrongPw.error.status, 401);
    assert.equal(await tab.evaluate(() => window.gh.authenticated), true, "a wrong password keeps the session");

    const start = await call(tab, (gh, pw) => gh.startTotpEnrolment(pw), user.password);
    assert.ok(start.ok, JSON.stringify(start));
    assert.match(start.value.secret, /^[A-Z2-7]+$/);
    assert.match(start.value.otpauth_uri, /^otpauth:\/\/totp\//);
    const auth = new Authenticator(start.value.secret);
    const bad = await call(tab, (gh, c) => gh.confirmTotp(c), auth.wrongCode());
    assert.equal(bad.error.code, "invalid_code");
    assert.equal(await tab.evaluate(() => window.gh.authenticated), true, "invalid_code does not end the session");
    const confirmed = await call(tab, (gh, c) => gh.confirmTotp(c), await auth.code());
    assert.ok(confirmed.ok, JSON.stringify(confirmed));
    assert.equal(confirmed.value.length, 10);
    assert.deepEqual((await call(tab, (gh) => gh.mfaStatus())).value, { totp: true, passkeys: 0 });
    const again = await call(tab, (gh, pw) => gh.startTotpEnrolment(pw), user.password);
    assert.equal(again.error.code, "already_enabled");

    // Sign out; login now rejects with an MfaRequiredError carrying the token and methods.
    await tab.evaluate(() => window.gh.logout());
    await tab.evaluate(() => (window.events = []));
    await other.evaluate(() => (window.events = []));
    const req = await call(tab, (gh, [e, p]) => gh.login(e, p), [user.email, user.password]);
    assert.equal(req.ok, false);
    assert.equal(req.error.name, "MfaRequiredError");
    assert.equal(req.error.isMfaRequired, true);
    assert.equal(req.error.isGatehouseError, true, "an MfaRequiredError is a GatehouseError");
    assert.equal(req.error.code, "mfa_required");
    assert.equal(req.error.status, 401);
    assert.equal(typeof req.error.mfaToken, "string");
    assert.deepEqual([...req.error.methods].sort(), ["recovery_code", "totp"]);
    assert.equal(await tab.evaluate(() => window.gh.authenticated), false);
    assert.deepEqual(await tab.evaluate(() => window.events), [], "no event before the second factor");

    const wrong = await call(tab, (gh, [tok, c]) => gh.verifyMfa(tok, "totp", c), [req.error.mfaToken, auth.wrongCode()]);
    assert.equal(wrong.error.code, "invalid_code");
    const ok = await call(tab, (gh, [tok, c]) => gh.verifyMfa(tok, "totp", c).then((u) => u.email), [req.error.mfaToken, await auth.code()]);
    assert.deepEqual(ok, { ok: true, value: user.email });
    assert.deepEqual(await tab.evaluate(() => window.events), ["login:" + user.email]);
    // The other tab adopts the session by broadcast.
    await other.waitForFunction(() => window.gh.authenticated);
    assert.deepEqual(await other.evaluate(() => window.events), ["login:" + user.email]);

    // A recovery code through verifyMfa, from a magic-link-free second login.
    const req2 = await call(other, (gh, [e, p]) => gh.login(e, p), [user.email, user.password]);
    assert.equal(req2.error.code, "mfa_required");
    const rec = await call(other, (gh, [tok, c]) => gh.verifyMfa(tok, "recovery_code", c).then((u) => u.email),
      [req2.error.mfaToken, confirmed.value[0]]);
    assert.deepEqual(rec, { ok: true, value: user.email });

    const regen = await call(tab, (gh, c) => gh.regenerateRecoveryCodes(c), await auth.code());
    assert.ok(regen.ok, JSON.stringify(regen));
    assert.equal(regen.value.length, 10);
    const off = await call(tab, (gh, c) => gh.disableTotp(c), regen.value[0]);
    assert.equal(off.ok, true, JSON.stringify(off));
    assert.deepEqual((await call(tab, (gh) => gh.mfaStatus())).value, { totp: false, passkeys: 0 });
    for (const p of [tab, other]) {
      assert.equal(await p.evaluate(() => localStorage.length + sessionStorage.length), 0, "nothing in web storage");
    }
    await context.close();
  });
});
