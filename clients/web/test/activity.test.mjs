// The "Activity" list of the /account page: the user's own sign-ins and security changes,
// read from GET /auth/activity, in real Chromium against the real binary.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createUser, launchBrowser, startServer, uniqueEmail, watchConsole } from "./helpers.mjs";

let server;
let browser;

before(async () => {
  server = await startServer(["--access-ttl", "5m"]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** The rows of the Activity list as { type, outcome, text }. */
const activity = (page) =>
  page.$$eval("#activity tr", (trs) =>
    trs.map((tr) => ({ type: tr.dataset.eventType, outcome: tr.dataset.outcome, text: tr.textContent })),
  );

describe("account page activity", () => {
  test("sign in, change the password: both appear in the Activity list", async (t) => {
    if (!browser) return t.skip("Chromium not installed");
    const user = await createUser(server.base, uniqueEmail("activity"));
    // A failed sign-in of this account, from elsewhere, shows up too.
    const failed = await fetch(server.base + "/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: user.email, password: "not the password at all" }),
    });
    assert.equal(failed.status, 401);

    const context = await browser.newContext();
    const errors = watchConsole(context);
    const page = await context.newPage();
    await page.goto(server.base + "/account");
    await page.locator("#signin").waitFor({ state: "visible" });
    await page.getByLabel("Email", { exact: true }).fill(user.email);
    await page.getByLabel("Password", { exact: true }).fill(user.password);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.locator("#account").waitFor({ state: "visible" });

    // The sign-in just made is listed, newest first, with this browser's device.
    await page.waitForFunction(() => document.querySelector("#activity tr[data-event-type=login][data-outcome=success]"));
    let rows = await activity(page);
    assert.equal(rows[0].type, "login");
    assert.equal(rows[0].outcome, "success");
    assert.match(rows[0].text, /Signed in with password/);
    assert.match(rows[0].text, /Chrome on Linux/);
    assert.ok(rows.some((r) => r.type === "login" && r.outcome === "failure" && /Failed sign-in.*wrong password/.test(r.text)),
      `a failed sign-in row in ${JSON.stringify(rows)}`);
    assert.ok(rows.some((r) => r.type === "signup" && /Account created/.test(r.text)));

    const newPassword = "another fine passphrase 7";
    await page.getByLabel("Current password").fill(user.password);
    await page.getByLabel("New password", { exact: true }).fill(newPassword);
    await page.getByLabel("Repeat new password").fill(newPassword);
    await page.getByRole("button", { name: "Change password" }).click();
    await page.getByText("Password changed.").waitFor();

    // The list updates by itself after the change.
    await page.waitForFunction(() => document.querySelector("#activity tr[data-event-type=password_changed]"));
    rows = await activity(page);
    assert.equal(rows[0].type, "password_changed", `newest row: ${JSON.stringify(rows[0])}`);
    assert.equal(rows[0].outcome, "success");
    assert.match(rows[0].text, /Password changed/);
    assert.ok(rows.findIndex((r) => r.type === "login" && r.outcome === "success") > 0, "the sign-in is still listed, below");
    for (const r of rows) {
      assert.doesNotMatch(r.text, new RegExp(newPassword + "|" + user.password), "no password on the page");
    }

    // "Show latest" reads it again; the same list comes back.
    await page.getByRole("button", { name: "Show latest" }).click();
    await page.waitForFunction(() => !document.querySelector("#reload-activity").disabled);
    assert.equal((await activity(page)).length, rows.length);
    assert.deepEqual(errors, []);
    await context.close();
  });
});
