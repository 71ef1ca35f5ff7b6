// The /account page served by the real binary, in real Chromium, with its real CSP.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  apiLogin, countRefreshes, createUser, launchBrowser, repoRoot, sleep, startServer, uniqueEmail, watchConsole,
} from "./helpers.mjs";

const EXPECTED_401 = /Failed to load resource: the server responded with a status of 401/;
const IPHONE_UA =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

let server;
let browser;

before(async () => {
  server = await startServer(["--access-ttl", "5m", "--reuse-grace", "1s"]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function openAccount(context) {
  const page = await context.newPage();
  await page.goto(server.base + "/account");
  await page.locator("#signin, #account").first().waitFor({ state: "visible" });
  return page;
}

async function signIn(page, user) {
  await page.getByLabel("Email", { exact: true }).fill(user.email);
  await page.getByLabel("Password", { exact: true }).fill(user.password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.locator("#account").waitFor({ state: "visible" });
}

const rows = (page) => page.locator("#sessions tr");

describe("account page", () => {
  test("serves the page with a strict CSP and no-cache", async () => {
    const r = await fetch(server.base + "/account");
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type"), /^text\/html/);
    assert.equal(r.headers.get("cache-control"), "no-cache");
    const csp = r.headers.get("content-security-policy");
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const js = await fetch(server.base + "/account/app.js");
    assert.equal(js.status, 200);
    assert.match(js.headers.get("content-type"), /javascript/);
    assert.equal((await fetch(server.base + "/account/nope.js")).status, 404);
    assert.equal((await fetch(server.base + "/account", { method: "POST" })).status, 405);
  });

  test("(d) keyboard only: sign in with Tab, typing and Enter; log out with the keyboard", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("keys"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    const page = await openAccount(context);
    assert.equal(await page.locator("#signin").isVisible(), true);
    const focused = () => page.evaluate(() => document.activeElement && document.activeElement.id);
    for (let i = 0; i < 10 && (await focused()) !== "email"; i++) await page.keyboard.press("Tab");
    assert.equal(await focused(), "email");
    await page.keyboard.type(user.email);
    await page.keyboard.press("Tab");
    assert.equal(await focused(), "password");
    await page.keyboard.type(user.password);
    await page.keyboard.press("Enter");
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await page.locator("#user-email").textContent(), user.email);
    assert.match(await page.locator("#status").textContent(), /Signed in as/);
    assert.equal(await focused(), "account-title", "focus moves to the account heading");
    // Shift+Tab from the heading reaches the "Log out" button in the header.
    await page.keyboard.press("Shift+Tab");
    assert.equal(await focused(), "logout");
    await page.keyboard.press("Enter");
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.match(await page.locator("#status").textContent(), /signed out/i);
    // A reload finds no session and shows the form without any failing request.
    await page.reload();
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.deepEqual(errors, []);
    await context.close();
  });

  test("wrong password is announced in the alert region", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("wrong"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    const page = await openAccount(context);
    await page.getByLabel("Email", { exact: true }).fill(user.email);
    await page.getByLabel("Password", { exact: true }).fill("not the password at all");
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor({ state: "visible" });
    assert.equal(await alert.textContent(), "Wrong email or password.");
    assert.equal(await alert.getAttribute("aria-live"), "assertive");
    assert.deepEqual(errors.filter((e) => !EXPECTED_401.test(e)), []);
    await context.close();
  });

  test("(c)(e)(f) two devices listed, ending one makes its next request fail; other actions", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("devices"));
    const desktop = await browser.newContext({ viewport: { width: 1000, height: 900 } });
    const phone = await browser.newContext({ userAgent: IPHONE_UA, viewport: { width: 390, height: 844 } });
    const desktopErrors = watchConsole(desktop);
    const phoneErrors = watchConsole(phone);

    const page = await openAccount(desktop);
    await signIn(page, user);
    const phonePage = await openAccount(phone);
    await signIn(phonePage, user);

    await page.getByRole("button", { name: "Reload" }).click();
    await page.waitForFunction(() => document.querySelectorAll("#sessions tr").length === 2);
    const current = rows(page).filter({ hasText: "This device" });
    assert.equal(await current.count(), 1);
    assert.match(await current.textContent(), /Chrome on Linux/);
    const other = rows(page).filter({ hasText: "Safari on iOS" });
    assert.equal(await other.count(), 1);
    assert.match(await other.textContent(), /127\.0\.0\.1/);
    assert.equal(await current.getByRole("button", { name: /^End/ }).count(), 0, "no End button for this device");

    mkdirSync(join(repoRoot, "test-artifacts"), { recursive: true });
    await page.screenshot({ path: join(repoRoot, "test-artifacts", "account.png"), fullPage: true });

    // End the phone's session from the desktop.
    await other.getByRole("button", { name: /^End session: Safari on iOS/ }).click();
    await page.waitForFunction(() => document.querySelectorAll("#sessions tr").length === 1);
    assert.match(await page.locator("#status").textContent(), /Ended the session on Safari on iOS/);

    // The phone's next request fails with 401 and the page signs out cleanly.
    const phoneRefreshes = countRefreshes(phone);
    const sessions401 = phonePage.waitForResponse(
      (r) => new URL(r.url()).pathname === "/auth/sessions" && r.status() === 401);
    await phonePage.getByRole("button", { name: "Reload" }).click();
    await sessions401;
    await phonePage.locator("#signin").waitFor({ state: "visible" });
    assert.match(await phonePage.locator("#status").textContent(), /session has ended/);
    await sleep(500);
    assert.ok(phoneRefreshes.n <= 1, `phone refreshes: ${phoneRefreshes.n}`);

    // A native-app device (body mode) shows up; "Log out of other devices" ends it.
    const app = await apiLogin(server.base, user.email, user.password);
    await page.getByRole("button", { name: "Reload" }).click();
    await page.waitForFunction(() => document.querySelectorAll("#sessions tr").length === 2);
    await page.getByRole("button", { name: "Log out of other devices" }).click();
    await page.waitForFunction(() => document.querySelectorAll("#sessions tr").length === 1);
    const me = await fetch(server.base + "/auth/me", { headers: { Authorization: "Bearer " + app.access_token } });
    assert.equal(me.status, 401, "the app's access token is revoked at once");

    // Change password (keeps this session, ends the others).
    const app2 = await apiLogin(server.base, user.email, user.password);
    const newPassword = "a brand new passphrase 42";
    await page.getByLabel("Current password").fill(user.password);
    await page.getByLabel("New password", { exact: true }).fill(newPassword);
    await page.getByLabel("Repeat new password").fill(newPassword);
    await page.getByRole("button", { name: "Change password" }).click();
    await page.getByText("Password changed.").waitFor();
    assert.equal(await rows(page).count(), 1);
    const me2 = await fetch(server.base + "/auth/me", { headers: { Authorization: "Bearer " + app2.access_token } });
    assert.equal(me2.status, 401);
    await apiLogin(server.base, user.email, newPassword); // the new password works

    // Reloading the page resumes the session silently from the cookie.
    await page.reload();
    await page.locator("#account").waitFor({ state: "visible" });
    assert.equal(await page.locator("#signin").isVisible(), false);

    // Log out everywhere.
    await page.getByRole("button", { name: "Log out everywhere" }).click();
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.match(await page.locator("#status").textContent(), /Signed out everywhere/);
    const jar = (await desktop.cookies()).map((c) => c.name);
    assert.ok(!jar.includes("__Secure-refresh_token"), "refresh cookie cleared");

    // Tokens never reach web storage.
    for (const p of [page, phonePage]) {
      assert.equal(await p.evaluate(() => localStorage.length + sessionStorage.length), 0);
    }
    assert.deepEqual(desktopErrors, [], "no console errors on the desktop");
    assert.deepEqual(phoneErrors.filter((e) => !EXPECTED_401.test(e)), [], "only the expected 401s on the phone");
    await desktop.close();
    await phone.close();
  });

  test("(b) a reuse verdict signs the page out cleanly, without a refresh loop", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("reuse-ui"));
    const context = await browser.newContext();
    const errors = watchConsole(context);
    const refreshes = countRefreshes(context);
    const page = await openAccount(context);
    await signIn(page, user);
    const jar = await context.cookies();
    const old = jar.find((c) => c.name === "__Secure-refresh_token").value;
    const csrf = jar.find((c) => c.name === "__Host-csrf_token").value;

    await page.reload(); // resuming rotates the refresh token
    await page.locator("#account").waitFor({ state: "visible" });
    const rotated = (await context.cookies()).find((c) => c.name === "__Secure-refresh_token").value;
    assert.notEqual(rotated, old);
    await sleep(1500); // past the 1 s grace window

    const replay = await fetch(server.base + "/auth/refresh", {
      method: "POST",
      headers: { Cookie: `__Secure-refresh_token=${old}; __Host-csrf_token=${csrf}`, "X-CSRF-Token": csrf },
    });
    assert.equal(replay.status, 401);
    assert.equal((await replay.json()).code, "refresh_token_reused");

    const before = refreshes.n;
    await page.getByRole("button", { name: "Reload" }).click();
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.match(await page.locator("#status").textContent(), /For your security this session was ended/);
    assert.equal(await page.locator("#account").isVisible(), false);
    await sleep(2000);
    assert.equal(refreshes.n - before, 1, "exactly one (failed) refresh after the verdict");
    // Reloading does not loop either: the server cleared the cookies or answers 401 once.
    await page.reload();
    await page.locator("#signin").waitFor({ state: "visible" });
    await sleep(500);
    assert.ok(refreshes.n - before <= 2, `refreshes after the verdict: ${refreshes.n - before}`);
    assert.deepEqual(errors.filter((e) => !EXPECTED_401.test(e)), []);
    await context.close();
  });
});
