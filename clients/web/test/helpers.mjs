// Shared helpers for the browser tests: build/start the real gatehouse binary on a free
// port with a temp SQLite database, and launch Debian's Chromium through playwright-core.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const webRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
export const repoRoot = join(webRoot, "..", "..");
export const CI = process.env.CI === "true" || process.env.CI === "1";
export const chromiumPath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Builds the binary unless GATEHOUSE_BIN is set; returns its path. */
export function gatehouseBinary(dir) {
  if (process.env.GATEHOUSE_BIN) return process.env.GATEHOUSE_BIN;
  const bin = join(dir, "gatehouse");
  execFileSync("go", ["build", "-o", bin, "./cmd/gatehouse"], { cwd: repoRoot, stdio: ["ignore", "inherit", "inherit"] });
  return bin;
}

/**
 * Starts `gatehouse serve`; resolves when /healthz answers 200, rejects otherwise. With
 * `{ mail: true }` the server writes its mail as .eml files into `mailDir` (a folder of
 * the temp directory) and its links point at `base` (--public-url).
 *
 * `base` is `http://<host>:<port>`. The server listens on 127.0.0.1; with
 * `{ host: "localhost" }` the browser reaches it as http://localhost:PORT and
 * --public-url is set to that (an IP address is not a valid WebAuthn RP ID, so the passkey
 * tests need a name). `api` is always the 127.0.0.1 address, for requests from Node.
 *
 * `port` picks the port (default: a free one), for a base URL known before the server starts;
 * `beforeServe({ bin, dir, database, run })` runs first, e.g. CLI commands on the same
 * database (`run(args)` runs the binary with them and resolves to its output).
 */
export async function startServer(extraArgs = [], { mail = false, host = "127.0.0.1", port: fixedPort, beforeServe } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-web-"));
  const bin = gatehouseBinary(dir);
  const port = fixedPort ?? (await freePort());
  const database = `sqlite:${join(dir, "gh.db")}`;
  if (beforeServe) {
    const run = (args) => execFileSync(bin, args, { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    await beforeServe({ bin, dir, database, run });
  }
  const base = `http://${host}:${port}`;
  const api = `http://127.0.0.1:${port}`;
  const mailDir = mail ? join(dir, "mail") : null;
  if (mailDir) {
    mkdirSync(mailDir);
    extraArgs = ["--mail-dir", mailDir, ...extraArgs];
  }
  if ((mailDir || host !== "127.0.0.1") && !extraArgs.includes("--public-url")) {
    extraArgs = ["--public-url", base, ...extraArgs];
  }
  const args = [
    "serve",
    "--addr", `127.0.0.1:${port}`,
    "--database", database,
    "--rate-limit-login", "off",
    "--rate-limit-refresh", "off",
    "--rate-limit-signup", "off",
    "--log-level", "warn",
    ...extraArgs,
  ];
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  proc.stdout.on("data", (d) => (output += d));
  proc.stderr.on("data", (d) => (output += d));
  let exited = null;
  proc.on("exit", (code, sig) => (exited = { code, sig }));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`gatehouse exited (${JSON.stringify(exited)}) before it was healthy:\n${output}`);
    try {
      const r = await fetch(api + "/healthz");
      if (r.status === 200) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`gatehouse did not become healthy within 30 s:\n${output}`);
    }
    await sleep(100);
  }
  return {
    base,
    api,
    port,
    mailDir,
    output: () => output,
    async stop() {
      if (!exited) {
        proc.kill("SIGTERM");
        await new Promise((r) => {
          const t = setTimeout(() => (proc.kill("SIGKILL"), r()), 5000);
          proc.on("exit", () => (clearTimeout(t), r()));
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Launches Chromium with extra command-line switches. Outside CI a missing browser yields
 * null (tests skip); in CI it throws.
 */
export async function launchBrowser(extraArgs = []) {
  if (!existsSync(chromiumPath)) {
    if (CI) throw new Error(`Chromium not found at ${chromiumPath} (apt-get install -y chromium)`);
    return null;
  }
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", ...extraArgs],
  });
}

/** Creates a user through the API (body mode, so no cookies are involved). */
export async function createUser(base, email, password = "correct horse battery staple", name = "Test User") {
  const r = await fetch(base + "/auth/signup", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password, name, token_transport: "body" }),
  });
  if (r.status !== 201) throw new Error(`signup ${email}: ${r.status} ${await r.text()}`);
  const body = await r.json();
  // Signing up opens a session; end it so tests see only the devices they sign in.
  const out = await fetch(base + "/auth/logout?scope=local", {
    method: "POST",
    headers: { Authorization: "Bearer " + body.access_token },
  });
  if (out.status !== 204) throw new Error(`logout after signup: ${out.status} ${await out.text()}`);
  return { email, password, name, user: body.user };
}

/** Signs in through the API in body mode (a "native app" device). */
export async function apiLogin(base, email, password, userAgent = "GatehouseTestApp/1.0 (node)") {
  const r = await fetch(base + "/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json", "User-Agent": userAgent },
    body: JSON.stringify({ email, password, token_transport: "body" }),
  });
  if (r.status !== 200) throw new Error(`login ${email}: ${r.status} ${await r.text()}`);
  return r.json();
}

let n = 0;
export const uniqueEmail = (tag) => `${tag}-${process.pid}-${Date.now()}-${n++}@example.com`;

/**
 * Collects console errors and page errors of every page in a context. `allow` filters
 * out expected entries (e.g. the 401 network logs of a revoked session).
 */
export function watchConsole(context) {
  const errors = [];
  const attach = (page) => {
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`${page.url()} console.error: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`${page.url()} pageerror: ${e.message}`));
  };
  context.pages().forEach(attach);
  context.on("page", attach);
  return errors;
}

/** Counts POST /auth/refresh requests made by a browser context. */
export function countRefreshes(context) {
  const c = { n: 0, statuses: [] };
  context.on("request", (req) => {
    if (req.method() === "POST" && new URL(req.url()).pathname === "/auth/refresh") c.n++;
  });
  context.on("response", (res) => {
    const req = res.request();
    if (req.method() === "POST" && new URL(req.url()).pathname === "/auth/refresh") c.statuses.push(res.status());
  });
  return c;
}

// ------------------------------------------------------------------ mail (.eml files)

/** Decodes a MIME part's body by its Content-Transfer-Encoding, as UTF-8 text. */
function decodeBody(body, encoding) {
  const enc = (encoding || "").trim().toLowerCase();
  if (enc === "base64") return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
  if (enc === "quoted-printable") {
    const soft = body.replace(/=\r?\n/g, "");
    const bytes = [];
    for (let i = 0; i < soft.length; i++) {
      const c = soft[i];
      if (c === "=" && /^[0-9A-Fa-f]{2}$/.test(soft.slice(i + 1, i + 3))) {
        bytes.push(parseInt(soft.slice(i + 1, i + 3), 16));
        i += 2;
      } else {
        bytes.push(...Buffer.from(c, "utf8"));
      }
    }
    return Buffer.from(bytes).toString("utf8");
  }
  return body;
}

/** Splits a message or part into unfolded headers (lower-case names) and the raw body. */
function splitMessage(raw) {
  const m = /\r?\n\r?\n/.exec(raw);
  const head = m ? raw.slice(0, m.index) : raw;
  const body = m ? raw.slice(m.index + m[0].length) : "";
  const headers = {};
  for (const line of head.replace(/\r?\n[ \t]+/g, " ").split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { headers, body };
}

/** The text/plain content of a message or part (searching multipart bodies depth-first). */
function plainText({ headers, body }) {
  const ctype = headers["content-type"] || "text/plain";
  if (/^multipart\//i.test(ctype)) {
    const b = /boundary="?([^";]+)"?/i.exec(ctype);
    if (!b) return null;
    const parts = body.split("--" + b[1]).slice(1);
    for (const part of parts) {
      if (part.startsWith("--")) break;
      const text = plainText(splitMessage(part.replace(/^\r?\n/, "")));
      if (text !== null) return text;
    }
    return null;
  }
  if (!/^text\/plain/i.test(ctype)) return null;
  return decodeBody(body, headers["content-transfer-encoding"]);
}

/** Every .eml file of a mail folder: { file, mtimeMs, to, subject, text }, oldest first. */
export function readMails(mailDir) {
  const mails = [];
  for (const name of readdirSync(mailDir)) {
    if (!name.endsWith(".eml")) continue;
    const file = join(mailDir, name);
    let raw;
    let st;
    try {
      st = statSync(file);
      raw = readFileSync(file, "utf8");
    } catch {
      continue; // being written or renamed
    }
    const msg = splitMessage(raw);
    mails.push({ file, mtimeMs: st.mtimeMs, to: msg.headers["to"] || "", subject: msg.headers["subject"] || "", text: plainText(msg) ?? "" });
  }
  return mails.sort((a, b) => a.mtimeMs - b.mtimeMs || a.file.localeCompare(b.file));
}

/**
 * Waits for the newest mail to `to` whose text contains `contains` and which is not one of
 * `seen` (files already used); resolves to it. Mail is queued, so it may take a moment.
 */
export async function waitForMail(mailDir, { to, contains, seen = [], timeoutMs = 20_000 }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hits = readMails(mailDir).filter(
      (m) => m.to.toLowerCase().includes(to.toLowerCase()) && m.text.includes(contains) && !seen.includes(m.file));
    if (hits.length) return hits[hits.length - 1];
    if (Date.now() > deadline) {
      const all = readMails(mailDir).map((m) => `${m.file} to=${m.to} subject=${m.subject}`).join("\n");
      throw new Error(`no mail to ${to} containing ${contains} within ${timeoutMs} ms; the folder has:\n${all}`);
    }
    await sleep(100);
  }
}

/** The `<base>/account/<action>#token=...` link of a mail's text. */
export function mailLink(mail, base, action) {
  const prefix = `${base}/account/${action}#token=`;
  const i = mail.text.indexOf(prefix);
  if (i < 0) throw new Error(`no ${action} link in mail ${mail.file}:\n${mail.text}`);
  const m = /^[A-Za-z0-9_\-.~%=]+/.exec(mail.text.slice(i + prefix.length));
  if (!m) throw new Error(`empty token in mail ${mail.file}`);
  return prefix + m[0].replace(/\.+$/, ""); // not a sentence's full stop
}

/** The 6-digit sign-in code of a mail: the digits on a line of their own. */
export function mailCode(mail) {
  const m = /^[ \t]*([0-9]{6})[ \t]*\r?$/m.exec(mail.text);
  if (!m) throw new Error(`no 6-digit code line in mail ${mail.file}:\n${mail.text}`);
  return m[1];
}
