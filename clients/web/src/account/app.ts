// The /account page. Built by esbuild into account/static/app.js, a classic script that
// runs first in <head>: ./link, ./oauth and ./provider (imported first, so evaluated first)
// remove a mail link's token, an OAuth sign-in request's id and an identity provider's
// return from the address bar at once; the rest waits for the document.
import { mailLink } from "./link";
import type { MailLink } from "./link";
import { forgetOAuthRequest, oauthRequest } from "./oauth";
import { providerVisit, returnUrl } from "./provider";
import type { ProviderVisit } from "./provider";
import { ConsentRequiredError, GatehouseClient, GatehouseError, MfaRequiredError, supportsPasskeys } from "../client";
import type { AuditEvent, Identity, IdentityProvider, LogoutReason, MfaStatus, OAuthConsent, Passkey, Session, User } from "../client";
import { qrCanvas } from "./qr";

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error("missing #" + id);
  return el as T;
};

const gh = new GatehouseClient();

// Elements, looked up once the document is parsed (main()).
let status: HTMLElement;
let alertBox: HTMLElement;
let loading: HTMLElement;
let signin: HTMLElement;
let codeEntry: HTMLElement;
let reset: HTMLElement;
let mfaStep: HTMLElement;
let account: HTMLElement;
let oauthSection: HTMLElement;
let logoutBtn: HTMLButtonElement;
let sessionsBody: HTMLElement;
let activityBody: HTMLElement;
/** The cursor of the next (older) page of the activity list, if any. */
let activityNext: string | null = null;

function say(msg: string): void {
  alertBox.hidden = true;
  alertBox.textContent = "";
  status.textContent = msg;
}

function fail(msg: string): void {
  status.textContent = "";
  alertBox.textContent = msg;
  alertBox.hidden = false;
}

/** Messages for one action's error codes, overriding the general ones of describe(). */
type Messages = Partial<Record<string, string>>;

function describe(err: unknown, messages: Messages = {}): string {
  if (err instanceof GatehouseError) {
    const specific = messages[err.code];
    if (specific !== undefined) return specific;
    switch (err.code) {
      case "invalid_credentials":
        return "Wrong email or password.";
      case "email_not_verified":
        return "Your email address is not verified yet. Open the link in the verification email, or use \u201cEmail me a sign-in link\u201d.";
      case "invalid_link":
        return "This link is invalid: it has expired, was already used, or a newer email replaced it. Please ask for a new one.";
      case "invalid_code":
        return "That code is not right, or it has expired. Check the newest email and try again, or ask for a new code.";
      case "already_verified":
        return "Your email address is already verified.";
      case "email_taken":
        return "That email address belongs to another account.";
      case "mfa_required":
        return "This account is protected by a second factor, which this page cannot ask for.";
      case "already_enabled":
        return "An authenticator app is already set up for your account.";
      case "rate_limited":
        return "Too many attempts. Please wait a moment and try again.";
      case "weak_password":
        return "That password is too common. Please choose another one.";
      case "network_error":
        return "Cannot reach the server. Check your connection and try again.";
      case "invalid_credential":
        return "This passkey was not accepted: it may have been removed from your account, or be meant for another site. Sign in another way, or try another passkey.";
      case "passkey_cancelled":
        return "The passkey prompt was cancelled or timed out, or this device has no passkey for this site. Try again, or sign in another way.";
      case "passkey_exists":
        return "This device already has a passkey for your account.";
      case "passkeys_unsupported":
        return "This browser cannot use passkeys on this page.";
      case "passkey_failed":
        return "The browser could not use the passkey. Please try again.";
      case "last_login_method":
        return "This is the only way left to sign in to your account, so it cannot be removed. Add another way to sign in first.";
      case "validation_failed": {
        const f = err.fieldErrors.map((e) => e.message).join(" ");
        return f || err.message;
      }
      default:
        return err.message;
    }
  }
  return "Something went wrong. Please try again.";
}

const LOGOUT_MESSAGES: Record<LogoutReason, string> = {
  logout: "You are signed out.",
  refresh_token_reused: "For your security this session was ended because its sign-in was used from somewhere else. Please sign in again.",
  invalid_refresh_token: "Your session has ended. Please sign in again.",
  no_session: "",
};

/** Short "Browser on OS" for a user agent string. */
export function deviceName(ua: string): string {
  if (!ua) return "Unknown device";
  const browser =
    /Edg\//.test(ua) ? "Edge" :
    /OPR\/|Opera/.test(ua) ? "Opera" :
    /Firefox\//.test(ua) ? "Firefox" :
    /Chrom(e|ium)\//.test(ua) ? "Chrome" :
    /Safari\//.test(ua) ? "Safari" :
    /curl|wget|okhttp|Go-http-client|node|undici|python/i.test(ua) ? "App" : "Browser";
  const os =
    /iPhone|iPad|iPod/.test(ua) ? "iOS" :
    /Android/.test(ua) ? "Android" :
    /Windows/.test(ua) ? "Windows" :
    /Mac OS X|Macintosh/.test(ua) ? "macOS" :
    /CrOS/.test(ua) ? "ChromeOS" :
    /Linux/.test(ua) ? "Linux" : "";
  return os ? `${browser} on ${os}` : browser;
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function time(iso: string): HTMLTimeElement {
  const t = document.createElement("time");
  t.dateTime = iso;
  const d = new Date(iso);
  t.textContent = isNaN(d.getTime()) ? iso : dateFmt.format(d);
  return t;
}

function cell(row: HTMLTableRowElement, ...content: (string | Node)[]): HTMLTableCellElement {
  const td = row.insertCell();
  td.append(...content);
  return td;
}

/** Shows one of the main sections (or none while loading), hiding the others. */
function showSection(section: HTMLElement | null): void {
  for (const s of [loading, signin, codeEntry, reset, mfaStep, account, oauthSection]) s.hidden = s !== section;
  logoutBtn.hidden = section !== account && section !== oauthSection;
}

function showSignedOut(message: string): void {
  pendingMfa = null;
  showSection(signin);
  sessionsBody.replaceChildren();
  activityBody.replaceChildren();
  activityNext = null;
  closeSecurityPanels();
  renderPasskeys([]);
  renderIdentities([]);
  renderConsents([]);
  // Signed out in the middle of an app's sign-in request: signing in continues it.
  $("oauth-hint").hidden = oauthRequest() === null;
  $<HTMLInputElement>("totp-password").value = "";
  $<HTMLInputElement>("passkey-name").value = "";
  if (message) say(message);
  $<HTMLInputElement>("email").focus();
}

function showUser(user: User): void {
  showSection(account);
  $("user-name").textContent = user.name || "—";
  $("user-email").textContent = user.email;
  $<HTMLInputElement>("password-username").value = user.email;
  $<HTMLInputElement>("change-email-username").value = user.email;
  $<HTMLInputElement>("totp-username").value = user.email;
  // Only an explicit false shows the banner (a server without the field never does).
  $("verify-banner").hidden = user.email_verified !== false;
  $("verify-address").textContent = user.email;
  $("user-role").textContent = user.role;
  $("user-created").replaceChildren(time(user.created_at));
}

function renderSessions(list: Session[]): void {
  const sorted = [...list].sort((a, b) => Number(b.current) - Number(a.current) || b.last_used_at.localeCompare(a.last_used_at));
  const rows = sorted.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset["sessionId"] = s.id;
    const name = document.createElement("strong");
    name.textContent = deviceName(s.user_agent);
    const ua = document.createElement("span");
    ua.className = "ua";
    ua.textContent = s.user_agent || "no user agent";
    const device = cell(tr, name);
    if (s.current) {
      tr.classList.add("current");
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "This device";
      device.append(badge);
    }
    device.append(ua);
    cell(tr, s.ip || "—");
    cell(tr, time(s.last_used_at));
    cell(tr, time(s.created_at));
    if (s.current) {
      cell(tr, "");
    } else {
      const end = document.createElement("button");
      end.type = "button";
      end.textContent = "End";
      end.setAttribute("aria-label", `End session: ${deviceName(s.user_agent)}, ${s.ip || "unknown IP"}`);
      end.addEventListener("click", () => void endSession(s, end));
      cell(tr, end);
    }
    return tr;
  });
  sessionsBody.replaceChildren(...rows);
}

/** Runs an action with its button disabled; reports errors. Signed-out is handled by the logout event. */
async function busy(btn: HTMLButtonElement | null, fn: () => Promise<void>, messages: Messages = {}): Promise<void> {
  if (btn) btn.disabled = true;
  try {
    await fn();
  } catch (err) {
    // A 401 that signed us out is reported by the "logout" event; anything else is shown here.
    const signedOut = err instanceof GatehouseError && err.status === 401 && err.code === "invalid_token" && !gh.authenticated;
    if (!signedOut) fail(describe(err, messages));
  } finally {
    if (btn) btn.disabled = false;
  }
}

async function loadSessions(): Promise<void> {
  renderSessions(await gh.sessions());
  // Ending sessions and changing the password are activity too. Read beside the
  // action's own answer, not before it: the action's message does not wait for it.
  void busy(null, loadActivity);
}

const METHOD_NAMES: Record<string, string> = {
  pwd: "password",
  email: "email link or code",
  hwk: "passkey",
  otp: "authenticator app",
  totp: "authenticator app",
  recovery: "recovery code",
  recovery_code: "recovery code",
  passkey: "passkey",
  fed: "another account",
};

const REASONS: Record<string, string> = {
  wrong_password: "wrong password",
  no_password: "no password set",
  disabled: "account disabled",
  email_not_verified: "email not verified",
  mfa_failed: "second factor not accepted",
  wrong_code: "wrong code",
};

const ADMIN_ACTIONS: Record<string, string> = {
  role_change: "An administrator changed your role",
  disable: "An administrator disabled your account",
  enable: "An administrator enabled your account",
  end_session: "An administrator ended one of your sessions",
  logout_user: "An administrator signed you out everywhere",
  mfa_reset: "An administrator removed your second factors",
  api_key_revoke: "An administrator revoked one of your API keys",
};

/** "with password and authenticator app": the methods of a sign-in, in words. */
function methods(detail: Record<string, string>): string {
  const words = (detail["method"] ?? "").split(" ").filter((m) => m && m !== "mfa");
  const names = [...new Set(words.map((m) => METHOD_NAMES[m] ?? m))];
  return names.length ? " with " + names.join(" and ") : "";
}

/** One line saying what an audit event means for the user. */
export function describeEvent(e: AuditEvent): string {
  const d = e.detail ?? {};
  const failed = e.outcome === "failure";
  const reason = failed && d["reason"] ? ` (${REASONS[d["reason"]] ?? d["reason"]})` : "";
  switch (e.type) {
    case "signup":
      return "Account created" + methods(d);
    case "login":
      return (failed ? "Failed sign-in" : "Signed in") + methods(d) + reason;
    case "mfa":
      return d["action"] === "totp_enabled" ? "Authenticator app turned on"
        : d["action"] === "totp_disabled" ? "Authenticator app turned off"
        : d["action"] === "recovery_codes_regenerated" ? "New recovery codes made"
        : "Second factors changed";
    case "passkey_added":
      return "Passkey added";
    case "passkey_removed":
      return "Passkey removed";
    case "password_changed":
      return failed ? "Password change refused" + reason : "Password changed";
    case "password_reset":
      return "Password reset by email";
    case "email_verified":
      return "Email address verified";
    case "email_changed":
      return "Email address changed";
    case "refresh_reuse":
      return "A stolen sign-in was detected and that session ended";
    case "logout":
      return d["scope"] === "session" ? "Signed out a device"
        : d["scope"] === "others" ? "Signed out of other devices"
        : d["scope"] === "global" ? "Signed out everywhere"
        : "Signed out";
    case "api_key_created":
      return "API key created";
    case "api_key_revoked":
      return "API key revoked";
    case "identity_linked":
      return "Sign-in with another account linked" + (d["provider"] ? ` (${d["provider"]})` : "");
    case "identity_unlinked":
      return "Sign-in with another account removed" + (d["provider"] ? ` (${d["provider"]})` : "");
    case "admin":
      return (ADMIN_ACTIONS[d["action"] ?? ""] ?? "An administrator changed your account") +
        (d["action"] === "role_change" && d["role"] ? ` to ${d["role"]}` : "");
  }
  return e.type;
}

function activityRow(e: AuditEvent): HTMLTableRowElement {
  const tr = document.createElement("tr");
  tr.dataset["eventType"] = e.type;
  tr.dataset["outcome"] = e.outcome;
  if (e.outcome === "failure") tr.classList.add("failure");
  cell(tr, describeEvent(e));
  cell(tr, time(e.time));
  cell(tr, e.ip ?? "—");
  cell(tr, e.user_agent ? deviceName(e.user_agent) : "—");
  return tr;
}

/** Numbers the activity reads, so that an answer overtaken by a newer read is dropped. */
let activityReads = 0;

/** Loads the newest page of the activity list (more: appends the next older page). */
async function loadActivity(more = false): Promise<void> {
  const read = ++activityReads;
  const page = await gh.activity(more && activityNext ? { after: activityNext } : {});
  if (read !== activityReads) return;
  const rows = page.events.map(activityRow);
  if (more) activityBody.append(...rows);
  else activityBody.replaceChildren(...rows);
  activityNext = page.next;
  $("more-activity").hidden = activityNext === null;
  $("activity-empty").hidden = activityBody.childElementCount > 0;
}

async function endSession(s: Session, btn: HTMLButtonElement): Promise<void> {
  await busy(btn, async () => {
    await gh.deleteSession(s.id);
    await loadSessions();
    say(`Ended the session on ${deviceName(s.user_agent)}.`);
    $("sessions-title").focus();
  });
}

/** The email typed into the sign-in form, or null (with a message) when there is none. */
function typedEmail(hint: string): string | null {
  const email = $<HTMLInputElement>("email");
  const value = email.value.trim();
  if (!value) {
    fail(hint);
    email.focus();
    return null;
  }
  return value;
}

/** The address the code entry is for (the one the sign-in mail went to). */
let codeEmail = "";

async function sendMagicLink(email: string): Promise<void> {
  await gh.requestMagicLink(email);
  codeEmail = email;
  $("code-sent").textContent =
    `If ${email} has an account, we sent it an email with a sign-in link and a 6-digit code. Open the link, or enter the code here.`;
  $<HTMLInputElement>("code").value = "";
  showSection(codeEntry);
  say("Email sent.");
  $("code").focus();
}

// ------------------------------------------------------- second factor at sign-in

type SecondFactor = "totp" | "recovery_code";

/** A sign-in waiting for its second factor. The mfa_token lives here, in memory only. */
let pendingMfa: {
  token: string;
  /** The code methods offered (the passkey is separate: `passkey`). */
  methods: SecondFactor[];
  passkey: boolean;
  mode: SecondFactor;
  startedAt: number;
  failures: number;
} | null = null;

/** The server voids an mfa_token after 5 minutes or 5 wrong codes. */
const MFA_TOKEN_MS = 5 * 60_000;
const MFA_MAX_FAILURES = 5;

function setMfaMode(mode: SecondFactor): void {
  if (!pendingMfa) return;
  pendingMfa.mode = mode;
  const totp = mode === "totp";
  $("mfa-totp-field").hidden = !totp;
  $("mfa-recovery-field").hidden = totp;
  $("mfa-switch").textContent = totp ? "Use a recovery code" : "Use your authenticator app";
  $("mfa-intro").textContent = totp
    ? "Your account has two-step sign-in. Enter the 6-digit code your authenticator app shows now."
    : "Enter one of the recovery codes you saved when you set up two-step sign-in.";
  $<HTMLInputElement>(totp ? "mfa-code" : "mfa-recovery").focus();
}

/** The first factor checked out: ask for the second one. */
function startMfa(err: MfaRequiredError): void {
  const methods = err.methods.filter((m): m is SecondFactor => m === "totp" || m === "recovery_code");
  const passkey = err.methods.includes("passkey") && supportsPasskeys();
  if (!err.mfaToken || (methods.length === 0 && !passkey)) {
    showSignedOut("");
    fail(err.methods.includes("passkey")
      ? "This account confirms sign-ins with a passkey, and this browser cannot use passkeys. Use a current Chrome, Edge, Firefox or Safari."
      : "This account signs in with a second factor that this page does not offer. Use an app that supports it.");
    return;
  }
  pendingMfa = { token: err.mfaToken, methods, passkey, mode: methods[0] ?? "totp", startedAt: Date.now(), failures: 0 };
  $<HTMLInputElement>("mfa-code").value = "";
  $<HTMLInputElement>("mfa-recovery").value = "";
  $("mfa-form").hidden = methods.length === 0;
  $("mfa-switch").hidden = methods.length < 2;
  $("mfa-passkey").hidden = !passkey;
  $("mfa-passkey-hint").hidden = methods.length === 0;
  // With no code to type, the passkey is the step's one action.
  $("mfa-passkey").classList.toggle("solo", methods.length === 0);
  $("mfa-passkey-button").classList.toggle("primary", methods.length === 0);
  showSection(mfaStep);
  say("");
  if (methods.length > 0) {
    setMfaMode(methods.includes("totp") ? "totp" : "recovery_code");
  } else {
    $("mfa-intro").textContent = "Your account has two-step sign-in. Confirm it is you with one of your passkeys.";
    $("mfa-passkey-button").focus();
  }
}

/** The second factor as a passkey of the user's, for the pending sign-in. */
async function submitMfaPasskey(btn: HTMLButtonElement): Promise<void> {
  const p = pendingMfa;
  if (!p) return abandonMfa("");
  if (Date.now() - p.startedAt > MFA_TOKEN_MS) {
    return abandonMfa("This sign-in took too long. Please sign in again.");
  }
  await busy(btn, async () => {
    say("Follow your browser\u2019s prompt to use your passkey\u2026");
    const user = await gh.verifyMfaWithPasskey(p.token);
    pendingMfa = null;
    say(`Signed in as ${user.email}.`);
    $("account-title").focus();
  }, {
    invalid_credential: "That passkey was not accepted: it is not one of this account\u2019s passkeys, or it was removed. Try another passkey" +
      (p.methods.length ? ", or enter a code." : ", or cancel and sign in again."),
  });
}

/** Back to the sign-in form, the pending sign-in forgotten. */
function abandonMfa(message: string): void {
  pendingMfa = null;
  $<HTMLInputElement>("mfa-code").value = "";
  $<HTMLInputElement>("mfa-recovery").value = "";
  showSignedOut("");
  if (message) fail(message);
}

/** Runs a sign-in: signed in, or on to the second-factor step. */
async function signInWith(fn: () => Promise<User>): Promise<User | null> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof MfaRequiredError) {
      startMfa(err);
      return null;
    }
    throw err;
  }
}

async function submitMfa(submit: HTMLButtonElement): Promise<void> {
  const p = pendingMfa;
  if (!p) return abandonMfa("");
  if (Date.now() - p.startedAt > MFA_TOKEN_MS) {
    return abandonMfa("This sign-in took too long. Please sign in again.");
  }
  const input = $<HTMLInputElement>(p.mode === "totp" ? "mfa-code" : "mfa-recovery");
  const code = p.mode === "totp" ? input.value.replace(/\s+/g, "") : input.value.trim();
  if (p.mode === "totp" && !/^[0-9]{6}$/.test(code)) {
    fail("Enter the 6-digit code from your authenticator app.");
    input.focus();
    return;
  }
  if (!code) {
    fail("Enter one of your recovery codes.");
    input.focus();
    return;
  }
  await busy(submit, async () => {
    say("Checking the code…");
    let user: User;
    try {
      user = await gh.verifyMfa(p.token, p.mode, code);
    } catch (err) {
      if (err instanceof GatehouseError && err.code === "invalid_code") {
        p.failures++;
        input.value = "";
        if (p.failures >= MFA_MAX_FAILURES) return abandonMfa("Too many wrong codes. Please sign in again.");
        fail(p.mode === "totp"
          ? "That code is not right. Enter the code your authenticator app shows now (each code works once)."
          : "That recovery code is not right, or it was already used.");
        input.focus();
        return;
      }
      throw err;
    }
    pendingMfa = null;
    $<HTMLInputElement>("mfa-code").value = "";
    $<HTMLInputElement>("mfa-recovery").value = "";
    say(`Signed in as ${user.email}.`);
    $("account-title").focus();
  });
}

// --------------------------------------------------------- security section

/** Hides the forms and panels of the security section; forgets the secret, QR and codes shown. */
function closeSecurityPanels(): void {
  for (const id of ["totp-password-form", "totp-enrol", "recovery-panel", "mfa-code-form", "passkey-remove"]) $(id).hidden = true;
  removing = null;
  $("totp-qr").replaceChildren();
  $("totp-secret").textContent = "";
  $("recovery-codes").replaceChildren();
  $<HTMLInputElement>("totp-code").value = "";
  $<HTMLInputElement>("mfa-manage-code").value = "";
}

let mfaOn = false;

function renderMfa(status: MfaStatus): void {
  mfaOn = status.totp;
  const passkeys = status.passkeys > 0;
  $("mfa-status").textContent = status.totp
    ? passkeys
      ? "Two-step sign-in is on: signing in with your password also asks for a code from your authenticator app or one of your passkeys."
      : "Two-step sign-in is on: signing in also asks for a code from your authenticator app."
    : passkeys
      ? "Two-step sign-in is on: signing in with your password also asks for one of your passkeys."
      : "Two-step sign-in is off: your password alone signs you in.";
  showMfaActions(true);
}

// ---------------------------------------------------------------- passkeys

/** The passkey whose removal waits for confirmation. */
let removing: Passkey | null = null;

const passkeyName = (pk: Passkey): string => pk.name || "Passkey";

function renderPasskeys(list: Passkey[]): void {
  const sorted = [...list].sort((a, b) => a.created_at.localeCompare(b.created_at));
  const rows = sorted.map((pk) => {
    const tr = document.createElement("tr");
    tr.dataset["passkeyId"] = pk.id;
    const name = document.createElement("strong");
    name.textContent = passkeyName(pk);
    cell(tr, name);
    cell(tr, time(pk.created_at));
    cell(tr, pk.last_used_at ? time(pk.last_used_at) : "Never");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "danger";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove passkey: ${passkeyName(pk)}`);
    remove.addEventListener("click", () => askRemovePasskey(pk));
    cell(tr, remove);
    return tr;
  });
  $("passkeys").replaceChildren(...rows);
  $("passkeys-wrap").hidden = rows.length === 0;
  $("passkeys-empty").hidden = rows.length > 0;
}

function askRemovePasskey(pk: Passkey): void {
  closeSecurityPanels();
  showMfaActions(true);
  removing = pk;
  $("passkey-remove-text").textContent = `Remove the passkey \u201c${passkeyName(pk)}\u201d? You will no longer be able to sign in with it.`;
  $("passkey-remove").hidden = false;
  say("");
  $("passkey-remove-confirm").focus();
}

/** Shows the buttons that fit the current state, or none while a form is open. */
function showMfaActions(show: boolean): void {
  $("mfa-off-actions").hidden = !show || mfaOn;
  $("mfa-on-actions").hidden = !show || !mfaOn;
}

async function loadSecurity(): Promise<void> {
  const status = await gh.mfaStatus();
  renderMfa(status);
  // GET /auth/me counts the passkeys: the list is asked for only when there are some.
  renderPasskeys(status.passkeys > 0 ? await gh.listPasskeys() : []);
  // Second factors and passkeys that changed are activity too.
  void busy(null, loadActivity);
}

/** Groups a base32 secret in fours for reading and typing. */
function groupSecret(secret: string): string {
  return secret.replace(/(.{4})(?=.)/g, "$1 ");
}

/** Shows freshly issued recovery codes (once: they leave the page with "I saved them"). */
function showRecoveryCodes(codes: string[]): void {
  recoveryCodes = codes;
  const items = codes.map((c) => {
    const li = document.createElement("li");
    li.textContent = c;
    return li;
  });
  $("recovery-codes").replaceChildren(...items);
  $("recovery-panel").hidden = false;
  showMfaActions(false);
  $("recovery-title").focus();
}

/** The recovery codes on screen, for Copy and Download. */
let recoveryCodes: string[] = [];

function recoveryText(): string {
  const who = gh.user?.email ? ` for ${gh.user.email}` : "";
  return `Gatehouse recovery codes${who}\nEach code signs you in once. Keep them somewhere safe.\n\n${recoveryCodes.join("\n")}\n`;
}

/** What the shared code form does: turn the app off, or issue new recovery codes. */
let codeFormAction: "disable" | "regenerate" = "disable";

function openCodeForm(action: "disable" | "regenerate"): void {
  closeSecurityPanels();
  codeFormAction = action;
  const disable = action === "disable";
  $("mfa-code-title").textContent = disable ? "Turn off two-step sign-in" : "New recovery codes";
  $("mfa-manage-label").textContent = disable
    ? "A code from your authenticator app, or a recovery code"
    : "6-digit code from your authenticator app";
  $("mfa-code-submit").textContent = disable ? "Turn off" : "Get new codes";
  $("mfa-code-form").hidden = false;
  showMfaActions(false);
  $("mfa-manage-code").focus();
}

function cancelSecurityForm(): void {
  closeSecurityPanels();
  showMfaActions(true);
  say("");
  $("security-title").focus();
}

function wirePasskeys(): void {
  const supported = supportsPasskeys();
  $("passkey-signin").hidden = !supported;
  $("passkey-form").hidden = !supported;
  $("passkeys-unsupported").hidden = supported;

  $<HTMLButtonElement>("passkey-signin-button").addEventListener("click", (e) =>
    void busy(e.currentTarget as HTMLButtonElement, async () => {
      say("Follow your browser\u2019s prompt to choose a passkey\u2026");
      const user = await signInWith(() => gh.signInWithPasskey());
      if (!user) return;
      $<HTMLInputElement>("password").value = "";
      say(`Signed in as ${user.email}.`);
      $("account-title").focus();
    }),
  );

  $<HTMLButtonElement>("mfa-passkey-button").addEventListener("click", (e) => void submitMfaPasskey(e.currentTarget as HTMLButtonElement));

  $<HTMLFormElement>("passkey-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>("passkey-name");
    const submit = $<HTMLButtonElement>("passkey-add");
    closeSecurityPanels();
    showMfaActions(true);
    void busy(submit, async () => {
      say("Follow your browser\u2019s prompt to create a passkey\u2026");
      const pk = await gh.registerPasskey(input.value);
      input.value = "";
      await loadSecurity();
      say(`Passkey \u201c${passkeyName(pk)}\u201d added. You can now sign in with it.`);
      $("passkeys-title").focus();
    }, {
      invalid_credential: "Your new passkey could not be verified, so it was not added. Please try again.",
      passkey_cancelled: "No passkey was added: the prompt was cancelled or timed out.",
    });
  });

  $<HTMLButtonElement>("passkey-remove-cancel").addEventListener("click", () => {
    closeSecurityPanels();
    say("");
    $("passkeys-title").focus();
  });

  $<HTMLButtonElement>("passkey-remove-confirm").addEventListener("click", (e) => {
    const pk = removing;
    if (!pk) return;
    void busy(e.currentTarget as HTMLButtonElement, async () => {
      try {
        await gh.deletePasskey(pk.id);
      } finally {
        closeSecurityPanels();
      }
      await loadSecurity();
      say(`Passkey \u201c${passkeyName(pk)}\u201d removed.`);
      $("passkeys-title").focus();
    }, {
      last_login_method: `You cannot remove \u201c${passkeyName(pk)}\u201d: it is the only way left to sign in to your account. Add another passkey first.`,
      not_found: "This passkey was already removed.",
    });
  });
}

function wireSecurity(): void {
  wirePasskeys();
  for (const id of ["totp-password-form", "totp-confirm-form", "mfa-code-form"]) {
    const cancel = $(id).querySelector("button.cancel") as HTMLButtonElement;
    cancel.addEventListener("click", cancelSecurityForm);
  }

  $<HTMLButtonElement>("totp-start").addEventListener("click", () => {
    closeSecurityPanels();
    $("totp-password-form").hidden = false;
    showMfaActions(false);
    $("totp-password").focus();
  });

  $<HTMLFormElement>("totp-password-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const password = $<HTMLInputElement>("totp-password");
    if (!password.value) {
      fail("Enter your password.");
      password.focus();
      return;
    }
    const submit = (e.currentTarget as HTMLFormElement).querySelector("button[type=submit]") as HTMLButtonElement;
    void busy(submit, async () => {
      let enrolment;
      try {
        enrolment = await gh.startTotpEnrolment(password.value);
      } catch (err) {
        if (err instanceof GatehouseError && err.code === "already_enabled") {
          password.value = "";
          closeSecurityPanels();
          await loadSecurity();
        }
        throw err;
      }
      password.value = "";
      $("totp-password-form").hidden = true;
      $("totp-qr").replaceChildren(qrCanvas(enrolment.otpauth_uri, "QR code to scan with your authenticator app"));
      $("totp-secret").textContent = groupSecret(enrolment.secret);
      $<HTMLInputElement>("totp-code").value = "";
      $("totp-enrol").hidden = false;
      say("");
      $("totp-enrol-title").focus();
    }, { invalid_credentials: "Your password is not correct." });
  });

  $<HTMLFormElement>("totp-confirm-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>("totp-code");
    const code = input.value.replace(/\s+/g, "");
    if (!/^[0-9]{6}$/.test(code)) {
      fail("Enter the 6-digit code your authenticator app shows.");
      input.focus();
      return;
    }
    const submit = (e.currentTarget as HTMLFormElement).querySelector("button[type=submit]") as HTMLButtonElement;
    void busy(submit, async () => {
      const codes = await gh.confirmTotp(code);
      closeSecurityPanels();
      mfaOn = true;
      await loadSecurity().catch(() => renderMfa({ totp: true, passkeys: 0 }));
      showRecoveryCodes(codes);
      say("Two-step sign-in is on. Save your recovery codes now: they are shown only once.");
    }, { invalid_code: "That code is not right. Enter the code the app shows now, and check that your device's clock is right." });
  });

  $<HTMLButtonElement>("totp-off").addEventListener("click", () => openCodeForm("disable"));
  $<HTMLButtonElement>("recovery-new").addEventListener("click", () => openCodeForm("regenerate"));

  $<HTMLFormElement>("mfa-code-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>("mfa-manage-code");
    const raw = input.value.trim();
    const code = /^[0-9\s]+$/.test(raw) ? raw.replace(/\s+/g, "") : raw;
    if (!code || (codeFormAction === "regenerate" && !/^[0-9]{6}$/.test(code))) {
      fail(codeFormAction === "regenerate" ? "Enter the 6-digit code from your authenticator app." : "Enter a code from your authenticator app or a recovery code.");
      input.focus();
      return;
    }
    const submit = (e.currentTarget as HTMLFormElement).querySelector("button[type=submit]") as HTMLButtonElement;
    const action = codeFormAction;
    void busy(submit, async () => {
      if (action === "disable") {
        await gh.disableTotp(code);
        closeSecurityPanels();
        await loadSecurity().catch(() => renderMfa({ totp: false, passkeys: 0 }));
        say("Two-step sign-in is off. Your recovery codes no longer work.");
        $("security-title").focus();
      } else {
        const codes = await gh.regenerateRecoveryCodes(code);
        closeSecurityPanels();
        showRecoveryCodes(codes);
        say("New recovery codes: the old ones no longer work. Save these now: they are shown only once.");
      }
    }, {
      invalid_code: action === "disable"
        ? "That code is not right. Enter the code your authenticator app shows now, or an unused recovery code."
        : "That code is not right. Enter the code your authenticator app shows now.",
    });
  });

  $<HTMLButtonElement>("recovery-copy").addEventListener("click", (e) =>
    void busy(e.currentTarget as HTMLButtonElement, async () => {
      try {
        await navigator.clipboard.writeText(recoveryCodes.join("\n") + "\n");
        say("Recovery codes copied.");
      } catch {
        // No clipboard access: select the list so that the keyboard shortcut copies it.
        getSelection()?.selectAllChildren($("recovery-codes"));
        fail("This browser did not let the page copy. The codes are selected: press Ctrl+C (\u2318C on a Mac) to copy them.");
      }
    }),
  );

  $<HTMLButtonElement>("recovery-download").addEventListener("click", () => {
    const url = URL.createObjectURL(new Blob([recoveryText()], { type: "text/plain;charset=utf-8" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = "gatehouse-recovery-codes.txt";
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    say("Recovery codes downloaded.");
  });

  $<HTMLButtonElement>("recovery-done").addEventListener("click", () => {
    recoveryCodes = [];
    closeSecurityPanels();
    showMfaActions(true);
    say("");
    $("security-title").focus();
  });
}

// ------------------------------------------------------- identity providers

/** The providers the server offers (GET /auth/idps); empty until loaded, or when it fails. */
let providers: IdentityProvider[] = [];
let providersLoaded: Promise<void> = Promise.resolve();

/** The name to show for a provider: its display name, else its name. */
function providerLabel(name: string): string {
  return providers.find((p) => p.name === name)?.display_name || name || "the other service";
}

function loadProviders(): Promise<void> {
  return gh.providers().then(
    (list) => {
      providers = list;
    },
    () => {
      providers = []; // no buttons: the rest of the page works without them
    },
  ).then(() => {
    renderProviderButtons();
    renderIdentities(identities);
  });
}

function providerButton(label: string, onClick: (btn: HTMLButtonElement) => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", () => onClick(b));
  return b;
}

function renderProviderButtons(): void {
  const buttons = providers.map((p) => {
    const b = providerButton(`Sign in with ${providerLabel(p.name)}`, (btn) => goToProvider(p.name, false, btn));
    b.dataset["provider"] = p.name;
    return b;
  });
  $("idp-buttons").replaceChildren(...buttons);
  $("idp-signin").hidden = buttons.length === 0;
}

/** Leaves for the provider's sign-in; its callback brings the browser back to this page. */
function goToProvider(name: string, link: boolean, btn: HTMLButtonElement): void {
  btn.disabled = true;
  say(`Taking you to ${providerLabel(name)}\u2026`);
  if (link) gh.linkWith(name, { redirectTo: returnUrl(name, true) });
  else gh.loginWith(name, { redirectTo: returnUrl(name, false) });
}

/** The linked accounts on screen. */
let identities: Identity[] = [];

function renderIdentities(list: Identity[]): void {
  identities = list;
  const sorted = [...list].sort((a, b) => a.created_at.localeCompare(b.created_at));
  const rows = sorted.map((idn) => {
    const tr = document.createElement("tr");
    tr.dataset["identityId"] = idn.id;
    const name = document.createElement("strong");
    name.textContent = providerLabel(idn.provider);
    cell(tr, name);
    cell(tr, idn.email || "\u2014");
    cell(tr, time(idn.created_at));
    const unlink = document.createElement("button");
    unlink.type = "button";
    unlink.className = "danger";
    unlink.textContent = "Unlink";
    unlink.setAttribute("aria-label", `Unlink ${providerLabel(idn.provider)}${idn.email ? ": " + idn.email : ""}`);
    unlink.addEventListener("click", () => void unlinkIdentity(idn, unlink));
    cell(tr, unlink);
    return tr;
  });
  $("identities").replaceChildren(...rows);
  $("identities-wrap").hidden = rows.length === 0;
  $("identities-empty").hidden = rows.length > 0;
  const linked = new Set(list.map((i) => i.provider));
  const links = providers
    .filter((p) => !linked.has(p.name))
    .map((p) => providerButton(`Link ${providerLabel(p.name)}`, (btn) => goToProvider(p.name, true, btn)));
  $("identity-links").replaceChildren(...links);
  $("identity-links").hidden = links.length === 0;
  // A server without providers, for a user without linked accounts: nothing to show.
  $("identities-section").hidden = providers.length === 0 && list.length === 0;
}

async function loadIdentities(): Promise<void> {
  await providersLoaded;
  // Without providers nothing can be linked, or used to sign in: no need to ask.
  renderIdentities(providers.length > 0 ? await gh.identities() : []);
}

async function unlinkIdentity(idn: Identity, btn: HTMLButtonElement): Promise<void> {
  const label = providerLabel(idn.provider);
  await busy(btn, async () => {
    try {
      await gh.unlinkIdentity(idn.id);
    } catch (err) {
      if (err instanceof GatehouseError && err.code === "not_found") await loadIdentities();
      throw err;
    }
    await loadIdentities();
    say(`Unlinked your ${label} account${idn.email ? " " + idn.email : ""}. It no longer signs you in here.`);
    $("identities-title").focus();
  }, {
    last_login_method: `You cannot unlink ${label}: it is the only way left to sign in to your account. ` +
      "Give your account a password first (sign out, enter your email and choose \u201cForgot password?\u201d), or add a passkey.",
    not_found: `This ${label} account was already unlinked.`,
  });
}

/** A readable message for the error code a provider's callback came back with. */
function providerError(visit: ProviderVisit): string {
  const name = providerLabel(visit.provider);
  // The code comes from the address bar: shown only when it looks like one of ours.
  const code = visit.error !== null && /^[a-z0-9_]{1,64}$/.test(visit.error) ? ` (${visit.error})` : "";
  switch (visit.error) {
    case "account_exists":
      return `An account with this email already exists. Sign in with your password, then link ${name} from Linked accounts.`;
    case "access_denied":
      return visit.link
        ? `Linking ${name} was cancelled. Nothing was changed.`
        : `Signing in with ${name} was cancelled. Try again, or sign in another way.`;
    case "temporarily_unavailable":
    case "unavailable":
      return `${name} cannot be reached right now. Please try again later, or sign in another way.`;
    case "invalid_state":
      return `The ${visit.link ? "link" : "sign-in"} with ${name} expired or was started in another tab or browser. Please try again.`;
    case "signup_disabled":
      return `There is no account for your ${name} account here, and ${name} cannot create one. Sign in another way, then link ${name} from Linked accounts.`;
    case "email_not_verified":
      return `${name} did not confirm your email address, so it cannot sign you in here. Confirm the address at ${name}, or sign in another way.`;
    case "login_required":
      return `To link ${name}, sign in first, then choose \u201cLink ${name}\u201d under Linked accounts.`;
    case "rate_limited":
      return "Too many attempts. Please wait a moment and try again.";
    case "not_configured":
      return `Signing in with ${name} is no longer offered here. Please sign in another way.`;
    default:
      return visit.link
        ? `${name} could not be linked to your account${code}. Please try again.`
        : `Signing in with ${name} did not work${code}. Please try again, or sign in another way.`;
  }
}

/** Back from a provider: its address was cleaned up before anything else ran (./provider). */
async function followProviderVisit(visit: ProviderVisit): Promise<void> {
  await providersLoaded;
  const name = providerLabel(visit.provider);
  if (visit.error === "mfa_required" && visit.mfa) {
    // The provider vouched for the first factor; the account asks for its second, as after a password.
    startMfa(new MfaRequiredError(401, "A second factor is required.", { code: "mfa_required" }, visit.mfa.token, visit.mfa.methods));
    return;
  }
  if (visit.error !== null) {
    fail(providerError(visit));
    return resumeSession();
  }
  await resumeSession();
  if (!gh.authenticated) {
    fail(visit.link
      ? `${name} could not be linked: you are not signed in in this browser any more. Sign in, then link it again.`
      : `Signing in with ${name} did not finish. Please try again, or sign in another way.`);
    return;
  }
  if (visit.link) {
    await busy(null, loadIdentities);
    say(`${name} is linked to your account: you can now sign in with it.`);
    $("identities-title").focus();
  } else {
    say(`Signed in with ${name} as ${gh.user?.email ?? ""}.`);
    $("account-title").focus();
  }
}

/** The signed-in page, with its lists loaded. */
function enterAccount(user: User): void {
  showUser(user);
  void busy(null, loadSessions);
  void busy(null, loadSecurity);
  void busy(null, loadIdentities);
  void busy(null, loadConsents);
}

// ------------------------------------------------------ OAuth sign-in requests

/** What a scope lets an app do, in words; a scope not listed here is shown as it is. */
const SCOPE_WORDS: Record<string, string> = {
  openid: "Know who you are",
  email: "See your email address",
  profile: "See your name and profile",
  offline_access: "Stay signed in, also when you are not using it",
};

/** A scope for the consent screen: its words, or the scope itself in code type. */
function scopeItem(scope: string): HTMLLIElement {
  const li = document.createElement("li");
  const words = SCOPE_WORDS[scope];
  if (words !== undefined) {
    li.textContent = words;
  } else {
    const code = document.createElement("code");
    code.textContent = scope;
    li.append(code);
  }
  li.dataset["scope"] = scope;
  return li;
}

/** The scopes of a consent in one line, for the Connected apps list. */
function scopeLine(scopes: string[]): string {
  if (scopes.length === 0) return "\u2014";
  const words = scopes.map((s) => SCOPE_WORDS[s] ?? s);
  return words.map((w, i) => (i === 0 ? w : w.charAt(0).toLowerCase() + w.slice(1))).join("; ");
}

const OAUTH_EXPIRED = "This sign-in request has expired. Go back to the app and try again.";

/** Whether a continuation is on its way (a second one would find the request used). */
let oauthBusy = false;

/** The oauth section in one of its states: waiting for the server, asking for consent, or
 * stuck after an error (Try again / Cancel). */
function showOAuthState(state: "wait" | "consent" | "retry", title: string): void {
  showSection(oauthSection);
  $("oauth-title").textContent = title;
  $("oauth-wait").textContent = "One moment, please.";
  $("oauth-wait").hidden = state !== "wait";
  $("consent").hidden = state !== "consent";
  $("oauth-retry").hidden = state !== "retry";
  for (const b of oauthSection.querySelectorAll("button")) b.disabled = false;
}

/** A redirect the page may follow: anything but a scheme that would run or embed content here. */
function followable(redirect: string): boolean {
  try {
    const u = new URL(redirect, location.href);
    return !["javascript:", "data:", "vbscript:", "blob:", "file:"].includes(u.protocol);
  } catch {
    return false;
  }
}

/**
 * Continues the app's sign-in request for the signed-in user: on to the app's redirect URI,
 * or the consent screen for a third-party app not allowed yet. `consent` is the user's answer
 * on that screen.
 */
async function continueOAuth(consent?: boolean): Promise<void> {
  const id = oauthRequest();
  if (id === null || oauthBusy) return;
  oauthBusy = true;
  showOAuthState("wait", consent === false ? "Going back to the app\u2026" : "Continuing to the app\u2026");
  try {
    const { redirect } = await gh.oauthContinue(id, consent);
    // Answered: the request is used up, whatever happens next.
    forgetOAuthRequest();
    if (!followable(redirect)) {
      if (gh.user) enterAccount(gh.user);
      fail("The app asked to be sent to an address this page does not open. Go back to the app and try again.");
      return;
    }
    $("oauth-title").textContent = consent === false ? "Going back to the app\u2026" : "Taking you back to the app\u2026";
    say("");
    location.assign(redirect);
    // An app on another scheme (a native app) opens beside this page, which then stays.
    setTimeout(() => {
      $("oauth-wait").textContent = "If the app did not open, go back to it and try again. You can close this page.";
    }, 5_000);
  } catch (err) {
    if (err instanceof ConsentRequiredError) {
      showConsent(err);
      return;
    }
    if (err instanceof GatehouseError && err.status === 400) {
      forgetOAuthRequest();
      if (gh.user) enterAccount(gh.user);
      fail(OAUTH_EXPIRED);
      return;
    }
    if (err instanceof GatehouseError && err.status === 401 && !gh.authenticated) {
      return; // signed out meanwhile: the "logout" event shows the sign-in form, which continues
    }
    showOAuthState("retry", "The app is waiting");
    fail(describe(err));
    $("oauth-retry-button").focus();
  } finally {
    oauthBusy = false;
  }
}

/** Asks the user whether the app may use their account. */
function showConsent(err: ConsentRequiredError): void {
  const name = err.client.name || err.client.client_id || "An app";
  showOAuthState("consent", `Allow ${name} to use your account?`);
  $("consent-user").textContent = gh.user?.email ?? "";
  $("consent-app").textContent = name;
  $("consent-scopes").replaceChildren(...err.scopes.map(scopeItem));
  $("consent-scopes-intro").hidden = err.scopes.length === 0;
  say("");
  $("oauth-title").focus();
}

function wireOAuth(): void {
  const answer = (consent: boolean) => () => {
    for (const b of oauthSection.querySelectorAll("button")) b.disabled = true;
    void continueOAuth(consent);
  };
  $<HTMLButtonElement>("consent-allow").addEventListener("click", answer(true));
  $<HTMLButtonElement>("consent-deny").addEventListener("click", answer(false));
  $<HTMLButtonElement>("oauth-retry-button").addEventListener("click", () => {
    say("");
    void continueOAuth();
  });
  $<HTMLButtonElement>("oauth-cancel").addEventListener("click", () => {
    forgetOAuthRequest();
    say("");
    if (gh.user) enterAccount(gh.user);
    $("account-title").focus();
  });
}

// ------------------------------------------------------------- connected apps

/** Numbers the reads of the list, so that an answer overtaken by a newer read is dropped. */
let consentReads = 0;

function renderConsents(list: OAuthConsent[]): void {
  consentReads++;
  const sorted = [...list].sort((a, b) => a.created_at.localeCompare(b.created_at));
  const rows = sorted.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset["clientId"] = c.client_id;
    const name = document.createElement("strong");
    name.textContent = c.client_name || c.client_id;
    cell(tr, name);
    cell(tr, scopeLine(c.scopes ?? []));
    cell(tr, time(c.created_at));
    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.className = "danger";
    revoke.textContent = "Revoke";
    revoke.setAttribute("aria-label", `Revoke access: ${c.client_name || c.client_id}`);
    revoke.addEventListener("click", () => void revokeConsent(c, revoke));
    cell(tr, revoke);
    return tr;
  });
  $("apps").replaceChildren(...rows);
  $("apps-section").hidden = rows.length === 0;
}

async function loadConsents(): Promise<void> {
  const read = ++consentReads;
  let list: OAuthConsent[];
  try {
    list = await gh.consents();
  } catch (err) {
    // A server without the OAuth provider has no such list: nothing to show.
    if (err instanceof GatehouseError && err.status === 404) list = [];
    else throw err;
  }
  if (read === consentReads) renderConsents(list);
}

async function revokeConsent(c: OAuthConsent, btn: HTMLButtonElement): Promise<void> {
  const name = c.client_name || c.client_id;
  await busy(btn, async () => {
    try {
      await gh.revokeConsent(c.client_id);
    } catch (err) {
      if (err instanceof GatehouseError && err.code === "not_found") await loadConsents();
      throw err;
    }
    await loadConsents();
    say(`${name} can no longer use your account. It was signed out, and asks again if you use it.`);
    $($("apps-section").hidden ? "account-title" : "apps-title").focus();
  }, { not_found: `${name} had no access any more.` });
}

/** Once the user is known: the signed-in page, or the sign-in form. */
async function resumeSession(): Promise<void> {
  let user: User | null;
  try {
    user = await gh.resume();
  } catch {
    showSignedOut("");
    fail("Cannot reach the server right now. You can still try to sign in.");
    return;
  }
  if (!user) showSignedOut("");
}

/** Handles a mail link: its token was taken from the address bar (./link) before anything else ran. */
async function followLink(link: MailLink): Promise<void> {
  if (!link.token) {
    fail("This link is incomplete. Open it from the email again, or copy the whole link into the address bar.");
    return resumeSession();
  }
  switch (link.action) {
    case "verify-email":
      say("Verifying your email address…");
      try {
        const user = await gh.verifyEmail(link.token);
        say(`Email verified: ${user.email}.`);
      } catch (err) {
        fail(describe(err, { invalid_link: "This verification link is invalid: it has expired, was already used, or a newer email replaced it. Sign in to ask for a new one." }));
      }
      return resumeSession();
    case "change-email":
      say("Confirming your new email address…");
      try {
        const user = await gh.confirmEmailChange(link.token);
        say(`Email changed to ${user.email}.`);
      } catch (err) {
        fail(describe(err, { invalid_link: "This confirmation link is invalid: it has expired, was already used, or a newer request replaced it. Change the address again from your account." }));
      }
      return resumeSession();
    case "magic-link":
      say("Signing in…");
      try {
        const user = await signInWith(() => gh.verifyMagicLink({ token: link.token }));
        if (user) {
          say(`Signed in as ${user.email}.`);
          $("account-title").focus();
        }
        return;
      } catch (err) {
        fail(describe(err, { invalid_link: "This sign-in link is invalid: it has expired, was already used, or a newer email replaced it. Ask for a new one below." }));
      }
      return resumeSession();
    case "reset-password":
      resetToken = link.token;
      say("");
      showSection(reset);
      $("reset-password").focus();
      return;
  }
}

/** The token of the reset link being used, in memory only. */
let resetToken = "";

function main(): void {
  status = $("status");
  alertBox = $("alert");
  loading = $("loading");
  signin = $("signin");
  codeEntry = $("code-entry");
  reset = $("reset");
  mfaStep = $("mfa-step");
  account = $("account");
  oauthSection = $("oauth");
  logoutBtn = $<HTMLButtonElement>("logout");
  sessionsBody = $("sessions");
  activityBody = $("activity");

  providersLoaded = loadProviders();
  // Back from the provider by the browser's Back button (the page restored as it was left).
  addEventListener("pageshow", (e) => {
    if (!e.persisted) return;
    for (const b of document.querySelectorAll<HTMLButtonElement>("#idp-buttons button, #identity-links button")) b.disabled = false;
    say("");
    // Back from the app after the page sent the browser there: the request is answered.
    if (!oauthSection.hidden && oauthRequest() === null && gh.user) enterAccount(gh.user);
  });

  gh.on("logout", ({ reason }) => showSignedOut(LOGOUT_MESSAGES[reason]));
  gh.on("login", ({ user }) => {
    // Signed in here or in another tab.
    pendingMfa = null;
    // An app's sign-in request waiting in this tab: on to it, whichever way the user signed in.
    if (oauthRequest() !== null) void continueOAuth();
    else enterAccount(user);
  });

  $<HTMLFormElement>("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const email = $<HTMLInputElement>("email");
    const password = $<HTMLInputElement>("password");
    if (!email.value || !password.value) {
      fail("Enter your email and password.");
      (email.value ? password : email).focus();
      return;
    }
    const submit = form.querySelector("button[type=submit]") as HTMLButtonElement;
    void busy(submit, async () => {
      say("Signing in…");
      const user = await signInWith(() => gh.login(email.value.trim(), password.value));
      password.value = "";
      if (!user) return;
      say(`Signed in as ${user.email}.`);
      $("account-title").focus();
    });
  });

  $<HTMLButtonElement>("forgot").addEventListener("click", (e) => {
    const email = typedEmail("Enter your email address, then choose \u201cForgot password?\u201d.");
    if (email === null) return;
    void busy(e.currentTarget as HTMLButtonElement, async () => {
      await gh.forgotPassword(email);
      say(`If ${email} has an account, we sent it an email with a link to choose a new password. The link works for one hour.`);
    });
  });

  $<HTMLButtonElement>("magic").addEventListener("click", (e) => {
    const email = typedEmail("Enter your email address, then choose \u201cEmail me a sign-in link\u201d.");
    if (email === null) return;
    void busy(e.currentTarget as HTMLButtonElement, () => sendMagicLink(email));
  });

  $<HTMLFormElement>("code-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const input = $<HTMLInputElement>("code");
    const code = input.value.replace(/\s+/g, "");
    if (!/^[0-9]{6}$/.test(code)) {
      fail("Enter the 6-digit code from the email.");
      input.focus();
      return;
    }
    const submit = form.querySelector("button[type=submit]") as HTMLButtonElement;
    void busy(submit, async () => {
      say("Signing in…");
      const user = await signInWith(() => gh.verifyMagicLink({ email: codeEmail, code }));
      input.value = "";
      if (!user) return;
      say(`Signed in as ${user.email}.`);
      $("account-title").focus();
    });
  });

  $<HTMLFormElement>("mfa-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const submit = (e.currentTarget as HTMLFormElement).querySelector("button[type=submit]") as HTMLButtonElement;
    void submitMfa(submit);
  });

  $<HTMLButtonElement>("mfa-switch").addEventListener("click", () => {
    if (!pendingMfa) return;
    say("");
    setMfaMode(pendingMfa.mode === "totp" ? "recovery_code" : "totp");
  });

  $<HTMLButtonElement>("mfa-cancel").addEventListener("click", () => {
    abandonMfa("");
    say("");
  });

  wireSecurity();
  wireOAuth();

  $<HTMLButtonElement>("code-resend").addEventListener("click", (e) =>
    void busy(e.currentTarget as HTMLButtonElement, () => sendMagicLink(codeEmail)),
  );

  $<HTMLButtonElement>("code-back").addEventListener("click", () => {
    showSignedOut("");
    say("");
    $<HTMLInputElement>("password").focus();
  });

  $<HTMLFormElement>("reset-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const next = $<HTMLInputElement>("reset-password");
    const confirm = $<HTMLInputElement>("reset-confirm");
    if (!next.value) {
      fail("Enter a new password.");
      next.focus();
      return;
    }
    if (next.value !== confirm.value) {
      fail("The new passwords do not match.");
      confirm.focus();
      return;
    }
    const submit = form.querySelector("button[type=submit]") as HTMLButtonElement;
    void busy(submit, async () => {
      try {
        await gh.resetPassword(resetToken, next.value);
      } catch (err) {
        if (err instanceof GatehouseError && err.code === "invalid_link") {
          // The link is dead: nothing left to do on this form.
          resetToken = "";
          form.reset();
          showSignedOut("");
          fail("This password reset link is invalid: it has expired, was already used, or a newer email replaced it. Enter your email and choose \u201cForgot password?\u201d for a new one.");
          return;
        }
        throw err;
      }
      resetToken = "";
      form.reset();
      showSignedOut("Your password was changed, and every device was signed out. Sign in with your new password.");
    });
  });

  $<HTMLButtonElement>("resend-verification").addEventListener("click", (e) =>
    void busy(e.currentTarget as HTMLButtonElement, async () => {
      try {
        await gh.sendVerificationEmail();
      } catch (err) {
        if (err instanceof GatehouseError && err.code === "already_verified") {
          $("verify-banner").hidden = true;
          say("Your email address is already verified.");
          return;
        }
        throw err;
      }
      say(`We sent a new verification link to ${gh.user?.email ?? "your address"}. It works for 24 hours.`);
    }),
  );

  $<HTMLButtonElement>("reload-activity").addEventListener("click", (e) =>
    void busy(e.currentTarget as HTMLButtonElement, () => loadActivity()),
  );
  $<HTMLButtonElement>("more-activity").addEventListener("click", (e) =>
    void busy(e.currentTarget as HTMLButtonElement, () => loadActivity(true)),
  );
  $<HTMLButtonElement>("reload-sessions").addEventListener("click", (e) =>
    void busy(e.currentTarget as HTMLButtonElement, async () => {
      await loadSessions();
      say("Device list updated.");
    }),
  );

  $<HTMLButtonElement>("logout-others").addEventListener("click", (e) =>
    void busy(e.currentTarget as HTMLButtonElement, async () => {
      await gh.logout("others");
      await loadSessions();
      say("Signed out of all other devices.");
    }),
  );

  $<HTMLButtonElement>("logout-global").addEventListener("click", (e) =>
    void busy(e.currentTarget as HTMLButtonElement, async () => {
      await gh.logout("global");
      say("Signed out everywhere.");
    }),
  );

  logoutBtn.addEventListener("click", () => void busy(logoutBtn, () => gh.logout("local")));

  $<HTMLFormElement>("password-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const current = $<HTMLInputElement>("current-password");
    const next = $<HTMLInputElement>("new-password");
    const confirm = $<HTMLInputElement>("confirm-password");
    if (!current.value || !next.value) {
      fail("Enter your current and your new password.");
      (current.value ? next : current).focus();
      return;
    }
    if (next.value !== confirm.value) {
      fail("The new passwords do not match.");
      confirm.focus();
      return;
    }
    const submit = form.querySelector("button[type=submit]") as HTMLButtonElement;
    void busy(submit, async () => {
      await gh.changePassword(current.value, next.value);
      form.reset();
      await loadSessions();
      say("Password changed. Your other devices were signed out.");
    }, { invalid_credentials: "Your current password is not correct." });
  });

  $<HTMLFormElement>("change-email-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const email = $<HTMLInputElement>("new-email");
    const password = $<HTMLInputElement>("change-email-password");
    const newEmail = email.value.trim();
    if (!newEmail || !password.value) {
      fail("Enter the new email address and your password.");
      (newEmail ? password : email).focus();
      return;
    }
    const submit = form.querySelector("button[type=submit]") as HTMLButtonElement;
    void busy(submit, async () => {
      await gh.changeEmail(newEmail, password.value);
      form.reset();
      say(`We sent a link to ${newEmail}. Your address changes when you open it (within one hour).`);
    }, { invalid_credentials: "Your password is not correct." });
  });

  if (mailLink) {
    void followLink(mailLink);
  } else if (providerVisit) {
    void followProviderVisit(providerVisit);
  } else {
    // Resume an existing session silently (the refresh cookie is HttpOnly; only a refresh can tell).
    void resumeSession();
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main, { once: true });
else main();
