// The mail flows of the /account page in real Chromium against the real binary, which
// writes its mail as .eml files into a temp folder (--mail-dir) with links to its own
// origin (--public-url): password reset, magic link (by link and by code), verification,
// email change; and mail-link tokens never stay in the address bar or the history.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  countRefreshes, webRoot, createUser, launchBrowser, mailCode, mailLink, readMails, startServer, uniqueEmail, waitForMail, watchConsole,
} from "./helpers.mjs";

// Expected console entries: failed requests the page handles (a wrong password or code, a
// used link, the sign-in form's refresh without a session).
const EXPECTED = /Failed to load resource: the server responded with a status of (400|401|403|409)/;

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

async function newContext() {
  return browser.newContext();
}

async function openAccount(context) {
  const page = await context.newPage();
  await page.goto(server.base + "/account");
  await page.locator("#signin, #account").first().waitFor({ state: "visible" });
  return page;
}

async function signIn(page, email, password) {
  await page.getByLabel("Email", { exact: true }).fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.locator("#account").waitFor({ state: "visible" });
}

/** Files of the mails already there, so a wait finds only a newer one. */
const seenMails = () => readMails(server.mailDir).map((m) => m.file);

/** Records every request URL and Referer of a context, to check a token never leaves in one. */
function watchRequests(context) {
  const seen = [];
  context.on("request", (req) => {
    seen.push(req.url());
    const ref = req.headers()["referer"];
    if (ref) seen.push(ref);
  });
  return seen;
}

/**
 * Follows a mail link in `page` (after at least one other entry in its history) and checks
 * that the token is gone: from the address bar once the page ran, from the history (back and
 * forward land on fragment-free entries), and from every request URL and Referer.
 */
async function followLink(page, link, requests, waitFor) {
  const token = new URL(link).hash.replace(/^#token=/, "");
  assert.ok(token.length >= 16, "the link carries a token");
  await page.goto(link);
  await waitFor();
  const here = await page.evaluate(() => ({ href: location.href, hash: location.hash, length: history.length }));
  assert.equal(here.href, server.base + "/account", "the address bar shows plain /account");
  assert.equal(here.hash, "");
  assert.ok(!page.url().includes(token));
  for (const url of requests) assert.ok(!url.includes(token), `a request carried the token: ${url}`);
  return { token, historyLength: here.length };
}

/** Back and forward through the history: no entry shows the token again. */
async function checkHistory(page, token) {
  await page.goBack();
  assert.ok(!page.url().includes(token), `back: ${page.url()}`);
  assert.ok(!page.url().includes("#"), `back: ${page.url()}`);
  await page.goForward();
  assert.ok(!page.url().includes(token), `forward: ${page.url()}`);
  const href = await page.evaluate(() => location.href);
  assert.equal(href, server.base + "/account", "forward lands on the replaced entry");
}

describe("mail flows on the account page", () => {
  test("the page is served at the mail-link paths with its CSP", async () => {
    for (const action of ["verify-email", "reset-password", "magic-link", "change-email"]) {
      const r = await fetch(`${server.base}/account/${action}`);
      assert.equal(r.status, 200, action);
      assert.match(r.headers.get("content-type"), /^text\/html/);
      assert.match(r.headers.get("content-security-policy"), /script-src 'self'(;|$)/);
      assert.match(await r.text(), /<script src="\/account\/app\.js"><\/script>/);
    }
  });

  test("forgot password: from the sign-in form through the mailed link to a signed-in page", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("forgot"));
    const context = await newContext();
    const errors = watchConsole(context);
    const requests = watchRequests(context);
    const page = await openAccount(context);

    const seen = seenMails();
    await page.getByLabel("Email", { exact: true }).fill(user.email);
    await page.getByRole("button", { name: "Forgot password?" }).click();
    await page.getByText(`If ${user.email} has an account, we sent it an email`).waitFor();

    const mail = await waitForMail(server.mailDir, { to: user.email, contains: "/account/reset-password#token=", seen });
    const link = mailLink(mail, server.base, "reset-password");
    const { token } = await followLink(page, link, requests, () => page.locator("#reset").waitFor({ state: "visible" }));

    const newPassword = "a freshly reset passphrase 7";
    await page.getByLabel("Your new password", { exact: true }).fill(newPassword);
    await page.getByLabel("Repeat your new password", { exact: true }).fill(newPassword);
    await page.getByRole("button", { name: "Set new password" }).click();
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.match(await page.locator("#status").textContent(), /Your password was changed/);

    await signIn(page, user.email, newPassword);
    assert.equal(await page.locator("#user-email").textContent(), user.email);
    // The old password is gone.
    const old = await fetch(server.base + "/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: user.email, password: user.password, token_transport: "body" }),
    });
    assert.equal(old.status, 401);

    await checkHistory(page, token);
    for (const url of requests) assert.ok(!url.includes(token), `a request carried the token: ${url}`);

    // The link works once: opening it again ends in a readable error.
    const again = await context.newPage();
    await again.goto(server.base + "/account");
    await again.goto(link);
    await again.locator("#reset").waitFor({ state: "visible" });
    await again.getByLabel("Your new password", { exact: true }).fill("yet another passphrase 99");
    await again.getByLabel("Repeat your new password", { exact: true }).fill("yet another passphrase 99");
    await again.getByRole("button", { name: "Set new password" }).click();
    await again.getByRole("alert").getByText(/This password reset link is invalid/).waitFor();
    assert.equal(await again.locator("#signin").isVisible(), true);

    assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0, "nothing in web storage");
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("magic link: the mailed link signs in; the token is gone from the address bar and history", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("magic-link"));
    const context = await newContext();
    const errors = watchConsole(context);
    const requests = watchRequests(context);
    const page = await openAccount(context);

    const seen = seenMails();
    await page.getByLabel("Email", { exact: true }).fill(user.email);
    await page.getByRole("button", { name: "Email me a sign-in link" }).click();
    await page.locator("#code-entry").waitFor({ state: "visible" });

    const mail = await waitForMail(server.mailDir, { to: user.email, contains: "/account/magic-link#token=", seen });
    const link = mailLink(mail, server.base, "magic-link");
    const before = await page.evaluate(() => history.length);
    const { token, historyLength } = await followLink(page, link, requests,
      () => page.locator("#account").waitFor({ state: "visible" }));
    assert.equal(historyLength, before + 1, "following the link added one entry, which was replaced");
    assert.equal(await page.locator("#user-email").textContent(), user.email);
    assert.match(await page.locator("#status").textContent(), /Signed in as/);
    // A sign-in by mail proves the address.
    assert.equal(await page.locator("#verify-banner").isVisible(), false);

    // The session is real: a reload resumes it from the refresh cookie.
    await page.reload();
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(page.url(), server.base + "/account");

    await checkHistory(page, token);
    for (const url of requests) assert.ok(!url.includes(token), `a request carried the token: ${url}`);
    assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0, "nothing in web storage");
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("magic link: the mailed 6-digit code signs in (a wrong code is refused readably)", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("magic-code"));
    const context = await newContext();
    const errors = watchConsole(context);
    const page = await openAccount(context);

    const seen = seenMails();
    await page.getByLabel("Email", { exact: true }).fill(user.email);
    await page.getByRole("button", { name: "Email me a sign-in link" }).click();
    await page.locator("#code-entry").waitFor({ state: "visible" });
    assert.match(await page.locator("#code-sent").textContent(), new RegExp(`If ${user.email.replace(/[.+]/g, "\\$&")} has an account`));

    const mail = await waitForMail(server.mailDir, { to: user.email, contains: "/account/magic-link#token=", seen });
    const code = mailCode(mail);

    const wrong = code === "000000" ? "111111" : "000000";
    await page.locator("#code-entry").getByLabel("6-digit code").fill(wrong);
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByRole("alert").getByText(/That code is not right/).waitFor();
    assert.equal(await page.locator("#code-entry").isVisible(), true);

    await page.locator("#code-entry").getByLabel("6-digit code").fill(code);
    await page.getByRole("button", { name: "Continue" }).click();
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await page.locator("#user-email").textContent(), user.email);
    assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0, "nothing in web storage");
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("an unverified user sees the resend banner; the new link verifies the address", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("verify"));
    // Signing up sent the first verification mail.
    const first = await waitForMail(server.mailDir, { to: user.email, contains: "/account/verify-email#token=" });
    const context = await newContext();
    const errors = watchConsole(context);
    const requests = watchRequests(context);
    const page = await openAccount(context);
    await signIn(page, user.email, user.password);

    const banner = page.locator("#verify-banner");
    assert.equal(await banner.isVisible(), true, "the banner shows for an unverified address");
    assert.match(await banner.textContent(), /not verified/);
    await page.getByRole("button", { name: "Resend verification" }).click();
    await page.getByText(`We sent a new verification link to ${user.email}`).waitFor();

    const mail = await waitForMail(server.mailDir, { to: user.email, contains: "/account/verify-email#token=", seen: [first.file] });
    const link = mailLink(mail, server.base, "verify-email");
    const { token } = await followLink(page, link, requests, () => page.getByText(`Email verified: ${user.email}.`).waitFor());
    // Still signed in, now verified: no banner.
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await banner.isVisible(), false);
    await checkHistory(page, token);

    // The first link was voided by the newer one.
    const old = await context.newPage();
    await old.goto(mailLink(first, server.base, "verify-email"));
    await old.getByRole("alert").getByText(/verification link is invalid/).waitFor();
    assert.equal(await old.evaluate(() => location.href), server.base + "/account");

    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("email change: the link mailed to the new address changes it", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("change-from"));
    const newEmail = uniqueEmail("change-to");
    const context = await newContext();
    const errors = watchConsole(context);
    const requests = watchRequests(context);
    const page = await openAccount(context);
    await signIn(page, user.email, user.password);

    await page.getByLabel("New email address").fill(newEmail);
    await page.locator("#change-email-password").fill("not the password at all");
    await page.getByRole("button", { name: "Change email" }).click();
    await page.getByRole("alert").getByText("Your password is not correct.").waitFor();
    assert.equal(await page.locator("#account").isVisible(), true, "a wrong password does not sign out");

    await page.locator("#change-email-password").fill(user.password);
    await page.getByRole("button", { name: "Change email" }).click();
    await page.getByText(`We sent a link to ${newEmail}`).waitFor();

    const mail = await waitForMail(server.mailDir, { to: newEmail, contains: "/account/change-email#token=" });
    const link = mailLink(mail, server.base, "change-email");
    const { token } = await followLink(page, link, requests, () => page.getByText(`Email changed to ${newEmail}.`).waitFor());
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await page.locator("#user-email").textContent(), newEmail);
    await checkHistory(page, token);
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });

  test("broken links give readable errors and leave no fragment", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const context = await newContext();
    const errors = watchConsole(context);
    const page = await context.newPage();
    await page.goto(server.base + "/account/magic-link#token=" + "A".repeat(43));
    await page.getByRole("alert").getByText(/This sign-in link is invalid/).waitFor();
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => location.href), server.base + "/account");

    await page.goto(server.base + "/account/verify-email");
    await page.getByRole("alert").getByText(/This link is incomplete/).waitFor();
    assert.equal(await page.evaluate(() => location.href), server.base + "/account");
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });
});

describe("client library: mail methods", () => {
  test("verifyMagicLink({email, code}) signs in like login; changeEmail with a wrong password is not retried", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("lib"));
    const context = await newContext();
    const errors = watchConsole(context);
    await context.route(server.base + "/__blank", (route) =>
      route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>blank</title>" }));
    const page = await context.newPage();
    await page.goto(server.base + "/__blank");
    await page.addScriptTag({ path: join(webRoot, "dist", "gatehouse.iife.js") });
    await page.evaluate(() => {
      window.events = [];
      window.gh = new window.Gatehouse.GatehouseClient();
      window.gh.on("login", (d) => window.events.push("login:" + d.user.email));
      window.gh.on("logout", (d) => window.events.push("logout:" + d.reason));
    });

    const seen = seenMails();
    await page.evaluate((email) => window.gh.requestMagicLink(email), user.email);
    // Unknown addresses get the same answer.
    await page.evaluate((email) => window.gh.forgotPassword(email), uniqueEmail("nobody"));
    const mail = await waitForMail(server.mailDir, { to: user.email, contains: "/account/magic-link#token=", seen });
    const code = mailCode(mail);
    const wrong = await page.evaluate(([email, code]) => window.gh.verifyMagicLink({ email, code }).then(
      () => "resolved", (e) => `${e.status} ${e.code}`), [user.email, code === "000000" ? "111111" : "000000"]);
    assert.equal(wrong, "401 invalid_code");
    assert.equal(await page.evaluate(() => window.gh.authenticated), false);
    const signedIn = await page.evaluate(([email, code]) => window.gh.verifyMagicLink({ email, code }).then((u) => ({
      email: u.email, verified: u.email_verified, authenticated: window.gh.authenticated, events: window.events,
    })), [user.email, code]);
    assert.deepEqual(signedIn, { email: user.email, verified: true, authenticated: true, events: ["login:" + user.email] });
    const names = (await context.cookies()).map((c) => c.name);
    assert.ok(names.includes("__Secure-refresh_token"), "cookie mode: the refresh cookie is set");

    // The address is verified now: asking for a verification mail is refused.
    const resend = await page.evaluate(() => window.gh.sendVerificationEmail().then(() => "sent", (e) => `${e.status} ${e.code}`));
    assert.equal(resend, "409 already_verified");

    // A wrong current password is one request: no refresh, no retry, still signed in.
    const refreshes = countRefreshes(context);
    let changes = 0;
    context.on("request", (r) => { if (new URL(r.url()).pathname === "/auth/email/change") changes++; });
    const changed = await page.evaluate(([to]) => window.gh.changeEmail(to, "not the password at all").then(
      () => "resolved", (e) => `${e.status} ${e.code}`), [uniqueEmail("lib-new")]);
    assert.equal(changed, "401 invalid_credentials");
    assert.equal(changes, 1);
    assert.equal(refreshes.n, 0);
    assert.equal(await page.evaluate(() => window.gh.authenticated), true);
    assert.deepEqual(await page.evaluate(() => window.events), ["login:" + user.email]);
    assert.deepEqual(errors.filter((e) => !EXPECTED.test(e)), []);
    await context.close();
  });
});
