// The /account page. Built by esbuild into account/static/app.js.
import { GatehouseClient, GatehouseError } from "../client";
import type { LogoutReason, Session, User } from "../client";

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error("missing #" + id);
  return el as T;
};

const gh = new GatehouseClient();

const status = $("status");
const alertBox = $("alert");
const loading = $("loading");
const signin = $("signin");
const account = $("account");
const logoutBtn = $<HTMLButtonElement>("logout");
const sessionsBody = $("sessions");

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

function describe(err: unknown): string {
  if (err instanceof GatehouseError) {
    switch (err.code) {
      case "invalid_credentials":
        return "Wrong email or password.";
      case "rate_limited":
        return "Too many attempts. Please wait a moment and try again.";
      case "weak_password":
        return "That password is too common. Please choose another one.";
      case "network_error":
        return "Cannot reach the server. Check your connection and try again.";
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

function showSignedOut(message: string): void {
  loading.hidden = true;
  account.hidden = true;
  logoutBtn.hidden = true;
  signin.hidden = false;
  sessionsBody.replaceChildren();
  if (message) say(message);
  $<HTMLInputElement>("email").focus();
}

function showUser(user: User): void {
  loading.hidden = true;
  signin.hidden = true;
  account.hidden = false;
  logoutBtn.hidden = false;
  $("user-name").textContent = user.name || "—";
  $("user-email").textContent = user.email;
  $<HTMLInputElement>("password-username").value = user.email;
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
async function busy(btn: HTMLButtonElement | null, fn: () => Promise<void>): Promise<void> {
  if (btn) btn.disabled = true;
  try {
    await fn();
  } catch (err) {
    // A 401 that signed us out is reported by the "logout" event; anything else is shown here.
    const signedOut = err instanceof GatehouseError && err.status === 401 && err.code !== "invalid_credentials" && !gh.authenticated;
    if (!signedOut) fail(describe(err));
  } finally {
    if (btn) btn.disabled = false;
  }
}

async function loadSessions(): Promise<void> {
  renderSessions(await gh.sessions());
}

async function endSession(s: Session, btn: HTMLButtonElement): Promise<void> {
  await busy(btn, async () => {
    await gh.deleteSession(s.id);
    await loadSessions();
    say(`Ended the session on ${deviceName(s.user_agent)}.`);
    $("sessions-title").focus();
  });
}

gh.on("logout", ({ reason }) => showSignedOut(LOGOUT_MESSAGES[reason]));
gh.on("login", ({ user }) => {
  // Signed in here or in another tab.
  showUser(user);
  void busy(null, loadSessions);
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
    const user = await gh.login(email.value.trim(), password.value);
    password.value = "";
    say(`Signed in as ${user.email}.`);
    $("account-title").focus();
  });
});

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
  });
});

// Resume an existing session silently (the refresh cookie is HttpOnly; only a refresh can tell).
gh.resume().then(
  (user) => {
    if (!user) showSignedOut("");
  },
  () => {
    showSignedOut("");
    fail("Cannot reach the server right now. You can still try to sign in.");
  },
);
