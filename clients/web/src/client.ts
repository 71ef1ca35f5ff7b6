// Gatehouse browser client.
//
// - The access token lives in memory only (this object), never in web storage.
// - The refresh token stays in its HttpOnly cookie; refresh and logout send the
//   X-CSRF-Token header: on the auth server's own origin copied from the
//   __Host-csrf_token cookie; on another origin (app.example.com beside
//   auth.example.com), which cannot read that cookie, kept in memory from the token
//   responses' csrf_token, and after a reload asked of GET /auth/csrf.
// - Refreshes happen proactively shortly before expiry, before sending a request
//   with an expired token, and after a 401 to a request that carried the token; at
//   most once at a time per tab (single-flight promise) and once across tabs (Web
//   Locks + BroadcastChannel: a tab that had to wait for another tab's refresh adopts
//   that tab's result).
// - A failed request is retried once after a refresh, never more.
// - refresh_token_reused / invalid_refresh_token end the session: a "logout" event
//   is emitted (in every tab) and nothing is retried. A visitor who never had a
//   session gets no "logout" event.

export interface User {
  id: string;
  email: string;
  name: string;
  role: string;
  created_at: string;
  /** Whether the user proved the address (verification link, magic link or password reset). */
  email_verified: boolean;
}

export interface Session {
  id: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  user_agent: string;
  ip: string;
  current: boolean;
}

export type LogoutScope = "local" | "others" | "global";

/** The types of audit events (API.md part 2). */
export type AuditEventType =
  | "signup"
  | "login"
  | "mfa"
  | "passkey_added"
  | "passkey_removed"
  | "password_changed"
  | "password_reset"
  | "email_verified"
  | "email_changed"
  | "refresh_reuse"
  | "logout"
  | "api_key_created"
  | "api_key_revoked"
  | "identity_linked"
  | "identity_unlinked"
  | "admin";

/** One security event: a sign-in (or a failed one), a change of password, email or
 * second factors, an admin action. `detail` holds a few non-secret facts by key
 * (`method`, `reason`, `scope`, `action`, `role`, ...). */
export interface AuditEvent {
  id: string;
  time: string;
  type: AuditEventType;
  user_id: string | null;
  session_id: string | null;
  ip: string | null;
  user_agent: string | null;
  outcome: "success" | "failure";
  detail: Record<string, string>;
}

/** A page of audit events, newest first; pass `next` as `after` for the page after. */
export interface AuditPage {
  events: AuditEvent[];
  next: string | null;
}

/** Filters of the admin audit listing. */
export interface AuditQuery {
  user_id?: string;
  type?: AuditEventType;
  after?: string;
  limit?: number;
}

/**
 * Why a session ended. The "logout" event fires only when one did: the client was signed
 * in and lost it, logout() was called, or the server refused the browser's refresh
 * cookie; never for a visitor who had no session.
 */
export type LogoutReason =
  | "logout" // this or another tab called logout()
  | "refresh_token_reused" // the server detected token theft and revoked the session
  | "invalid_refresh_token" // the session ended (revoked elsewhere, expired, password changed)
  | "no_session"; // the client was signed in, but the browser's session cookies are gone

export interface LoginEventDetail {
  user: User;
}
export interface LogoutEventDetail {
  reason: LogoutReason;
}
export interface TokenEventDetail {
  expiresAt: number;
}

export interface ClientOptions {
  /**
   * Origin (and optional path prefix) of the Gatehouse server, e.g.
   * "https://auth.example.com". Default: the page's own origin (""). Only the client's
   * own calls (login, refresh, me, ...) go there; `fetch` resolves paths against the page.
   */
  baseUrl?: string;
  /**
   * Refresh this long before the access token expires (ms). Default 30 s, capped at a
   * quarter of the token's lifetime so short-lived tokens are not refreshed constantly.
   */
  refreshMarginMs?: number;
  /** Schedule a background refresh before expiry (default true). Tokens are still
   * refreshed on demand before a request if this is off. */
  autoRefresh?: boolean;
  /** Name shared by all tabs for the refresh lock and the broadcast channel. */
  channelName?: string;
  /** How long a tab that waited for another tab's refresh waits for its result (ms). */
  peerWaitMs?: number;
  /** The fetch implementation (default: globalThis.fetch). */
  fetch?: typeof fetch;
  /** Clock (ms since epoch); injectable for tests. */
  now?: () => number;
}

/** How `verifyMagicLink` proves the address: the link's token, or the mailed 6-digit code. */
export type MagicLinkProof = { token: string } | { email: string; code: string };

/** A second-factor method the server offers after the first factor: `verifyMfa` takes
 * `totp` and `recovery_code`; `passkey` is `verifyMfaWithPasskey`. */
export type MfaMethod = "totp" | "recovery_code" | "passkey";

/** The user's second factors (the `mfa` member of GET /auth/me). */
export interface MfaStatus {
  /** Whether an authenticator app (TOTP) is on. */
  totp: boolean;
  /** How many passkeys the user has. */
  passkeys: number;
}

/** One of the user's passkeys (GET /auth/passkeys). */
export interface Passkey {
  id: string;
  /** The name given when it was added (or the server's default). */
  name: string;
  created_at: string;
  /** When it last signed in; null (or empty) when it never has. */
  last_used_at: string | null;
}

/** The start of an authenticator-app enrolment: show `otpauth_uri` as a QR code and
 * `secret` as text, then confirm with a code from the app (`confirmTotp`). */
export interface TotpEnrolment {
  /** The shared secret, base32 without padding. */
  secret: string;
  /** `otpauth://totp/<issuer>:<email>?secret=...&issuer=...` */
  otpauth_uri: string;
}

/** An external identity provider offered for sign-in (GET /auth/idps). */
export interface IdentityProvider {
  /** The name in the provider's URLs (`/auth/idps/<name>/...`), e.g. "google". */
  name: string;
  /** The name to show on its button, e.g. "Google". */
  display_name: string;
}

/** An external account linked to the user (GET /auth/identities). */
export interface Identity {
  id: string;
  /** The provider's `name`. */
  provider: string;
  /** The address the provider gave for this account (may be empty). */
  email: string;
  created_at: string;
}

/** Where a sign-in's tokens go: the refresh token as an HttpOnly cookie (this client's way),
 * or everything in the response body (native apps). */
export type TokenTransport = "cookie" | "body";

/** Options of `loginWith` and `authorizeUrl`. */
export interface LoginWithOptions {
  /** Where the provider's callback sends the browser back to: an absolute URL or a path
   * (resolved against the page). Default: this page without its fragment. It must be on
   * Gatehouse's origin or under an entry of the server's `--redirect-allowlist`. */
  redirectTo?: string;
  /** Default "cookie": the browser comes back signed in (call `resume()`). With "body" it
   * comes back with `#login_code=...` for `exchangeLoginCode`. */
  transport?: TokenTransport;
}

/**
 * What a provider's callback put into the fragment of `redirect_to` (`takeProviderReturn`):
 * - `error`, a stable code such as `account_exists` or `access_denied` (no session was made);
 *   `mfa_required` comes with `mfaToken` and `methods`, for `verifyMfa` or
 *   `verifyMfaWithPasskey` as after a password;
 * - `loginCode`, the body-transport code for `exchangeLoginCode` (60 s, single use);
 * - `linked`, the provider's name, after `linkWith` succeeded.
 * A cookie-transport sign-in that succeeded has no fragment (null): `resume()`.
 */
export type ProviderReturn =
  | { error: string; mfaToken?: string; methods?: MfaMethod[] }
  | { loginCode: string }
  | { linked: string };

/** A body-transport token response (`exchangeLoginCode`): the app keeps these itself. */
export interface TokenSet {
  access_token: string;
  refresh_token: string;
  token_type?: string;
  expires_in: number;
  session_id: string;
  user: User;
}

/** The app (OAuth client) a sign-in request of Gatehouse's OAuth provider comes from. */
export interface OAuthClientInfo {
  client_id: string;
  /** The name registered for the app, to show on the consent screen. */
  name: string;
}

/** The answer of `oauthContinue`: where to send the browser (the app's redirect URI with a
 * `code` and `state`, or with `error=access_denied` after a denied consent). */
export interface OAuthContinuation {
  redirect: string;
}

/** An app the user allowed to use their account (GET /auth/consents). */
export interface OAuthConsent {
  client_id: string;
  client_name: string;
  /** The scopes allowed, e.g. `["openid", "email", "offline_access"]`. */
  scopes: string[];
  /** When the user allowed them. */
  created_at: string;
}

/** A problem+json error from the server (or a network failure, status 0). */
export class GatehouseError extends Error {
  readonly status: number;
  readonly code: string;
  readonly problem: Record<string, unknown> | undefined;
  constructor(status: number, code: string, message: string, problem?: Record<string, unknown>) {
    super(message);
    this.name = "GatehouseError";
    this.status = status;
    this.code = code;
    this.problem = problem;
  }
  /** Per-field messages of a 422 validation error. */
  get fieldErrors(): { field: string; message: string }[] {
    const e = this.problem?.["errors"];
    return Array.isArray(e) ? (e as { field: string; message: string }[]) : [];
  }
}

/**
 * Codes of the errors the passkey methods reject with when the browser's WebAuthn call
 * fails (a `GatehouseError` with status 0; `problem.dom_exception` names the DOMException):
 * - `passkey_cancelled`: the user cancelled the prompt, it timed out, or the device has no
 *   passkey this server accepts (WebAuthn does not tell these apart: `NotAllowedError`);
 * - `passkey_exists`: adding a passkey to a device that already holds one of this account's
 *   (`InvalidStateError`);
 * - `passkeys_unsupported`: the browser has no WebAuthn, or not for this page (`NotSupportedError`,
 *   `SecurityError`: e.g. the page's host does not match the server's `--public-url`);
 * - `passkey_failed`: any other failure of the browser's call.
 */
export type PasskeyErrorCode = "passkey_cancelled" | "passkey_exists" | "passkeys_unsupported" | "passkey_failed";

/**
 * The first factor checked out but the account has a second factor: `login` and
 * `verifyMagicLink` reject with this (status 401, code `mfa_required`). No session exists
 * yet: pass `mfaToken` to `verifyMfa` with a code, or to `verifyMfaWithPasskey`, within 5
 * minutes. Keep the token in memory only.
 */
export class MfaRequiredError extends GatehouseError {
  /** The short-lived token that `verifyMfa` and `verifyMfaWithPasskey` need (5 minutes;
   * voided after 5 wrong codes). */
  readonly mfaToken: string;
  /** The second factors the user can use, e.g. `["totp", "recovery_code", "passkey"]`. */
  readonly methods: MfaMethod[];
  constructor(status: number, message: string, problem: Record<string, unknown>, mfaToken: string, methods: MfaMethod[]) {
    super(status, "mfa_required", message, problem);
    this.name = "MfaRequiredError";
    this.mfaToken = mfaToken;
    this.methods = methods;
  }
}

/**
 * `oauthContinue` for a third-party app the user has not allowed yet (status 403, code
 * `consent_required`): show `client.name` and `scopes`, ask the user, and call
 * `oauthContinue` again with `consent` true or false. The sign-in request stays usable.
 */
export class ConsentRequiredError extends GatehouseError {
  /** The app asking. */
  readonly client: OAuthClientInfo;
  /** The scopes it asks for, e.g. `["openid", "email"]`. */
  readonly scopes: string[];
  constructor(status: number, message: string, problem: Record<string, unknown>, client: OAuthClientInfo, scopes: string[]) {
    super(status, "consent_required", message, problem);
    this.name = "ConsentRequiredError";
    this.client = client;
    this.scopes = scopes;
  }
}

interface TokenResponse {
  access_token: string;
  expires_in: number;
  session_id: string;
  user: User;
  /** Cookie mode: the value of the __Host-csrf_token cookie, for pages on another origin. */
  csrf_token?: string;
}

type PeerMessage =
  | {
      type: "token";
      accessToken: string;
      expiresAt: number;
      lifetimeMs: number;
      sessionId: string;
      user: User;
      csrfToken?: string | null;
    }
  | { type: "logout"; reason: LogoutReason }
  | { type: "refresh-failed" };

type State = "unknown" | "authenticated" | "signed-out";

const CSRF_COOKIE = "__Host-csrf_token";
const SESSION_END_CODES = new Set(["refresh_token_reused", "invalid_refresh_token"]);

/** Reads a cookie readable by JavaScript (used only for the CSRF cookie). */
export function readCookie(name: string, cookieString: string = typeof document === "undefined" ? "" : document.cookie): string | null {
  for (const part of cookieString.split(";")) {
    const i = part.indexOf("=");
    if (i < 0) continue;
    if (part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return null;
}

async function toError(res: Response): Promise<GatehouseError> {
  let problem: Record<string, unknown> | undefined;
  try {
    const ct = res.headers.get("Content-Type") ?? "";
    if (ct.includes("json")) problem = (await res.json()) as Record<string, unknown>;
  } catch {
    problem = undefined;
  }
  // Problem documents carry `code`; the OAuth endpoints answer RFC 6749 errors, `error`.
  const code =
    typeof problem?.["code"] === "string" ? (problem["code"] as string) :
    typeof problem?.["error"] === "string" ? (problem["error"] as string) :
    `http_${res.status}`;
  const msg =
    (typeof problem?.["detail"] === "string" && (problem["detail"] as string)) ||
    (typeof problem?.["error_description"] === "string" && (problem["error_description"] as string)) ||
    (typeof problem?.["title"] === "string" && (problem["title"] as string)) ||
    `HTTP ${res.status}`;
  if (code === "consent_required" && problem !== undefined) return consentRequired(res.status, msg, problem);
  if (code === "mfa_required" && problem !== undefined && typeof problem["mfa_token"] === "string") {
    const raw = problem["methods"];
    const methods = (Array.isArray(raw) ? raw : []).filter((m): m is MfaMethod => typeof m === "string") as MfaMethod[];
    return new MfaRequiredError(res.status, msg, problem, problem["mfa_token"] as string, methods);
  }
  return new GatehouseError(res.status, code, msg, problem);
}

/** A consent_required answer as a ConsentRequiredError, its members checked (they come from the network). */
function consentRequired(status: number, msg: string, problem: Record<string, unknown>): ConsentRequiredError {
  const c = problem["client"];
  const client = typeof c === "object" && c !== null ? (c as Record<string, unknown>) : {};
  const id = typeof client["client_id"] === "string" ? client["client_id"] : "";
  const name = typeof client["name"] === "string" && client["name"] ? client["name"] : id;
  const raw = problem["scopes"];
  const scopes = (Array.isArray(raw) ? raw : []).filter((s): s is string => typeof s === "string");
  return new ConsentRequiredError(status, msg, problem, { client_id: id, name }, scopes);
}

// ------------------------------------------------------------ WebAuthn JSON

/** Whether this browser can create and use passkeys (WebAuthn with public-key credentials). */
export function supportsPasskeys(): boolean {
  return typeof PublicKeyCredential === "function" && typeof navigator !== "undefined" && !!navigator.credentials;
}

type Json = Record<string, unknown>;

function b64urlToBytes(s: string): Uint8Array {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesToB64url(buf: ArrayBuffer | ArrayBufferView): string {
  const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i] as number);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A descriptor list with base64url ids turned into bytes (for browsers without the parse*FromJSON methods). */
function descriptors(list: unknown): Json[] | undefined {
  if (!Array.isArray(list)) return undefined;
  return list.map((d: Json) => ({ ...d, id: b64urlToBytes(String(d["id"])) }));
}

type PkcStatics = {
  parseCreationOptionsFromJSON?: (o: Json) => CredentialCreationOptions["publicKey"];
  parseRequestOptionsFromJSON?: (o: Json) => CredentialRequestOptions["publicKey"];
};

/** PublicKeyCredential.parseCreationOptionsFromJSON, or the same by hand where it is missing. */
function creationOptions(json: Json): PublicKeyCredentialCreationOptions {
  const pkc = PublicKeyCredential as unknown as PkcStatics;
  if (typeof pkc.parseCreationOptionsFromJSON === "function") {
    return pkc.parseCreationOptionsFromJSON(json) as PublicKeyCredentialCreationOptions;
  }
  const user = json["user"] as Json;
  const out: Json = { ...json, challenge: b64urlToBytes(String(json["challenge"])), user: { ...user, id: b64urlToBytes(String(user["id"])) } };
  const exclude = descriptors(json["excludeCredentials"]);
  if (exclude) out["excludeCredentials"] = exclude;
  return out as unknown as PublicKeyCredentialCreationOptions;
}

/** PublicKeyCredential.parseRequestOptionsFromJSON, or the same by hand where it is missing. */
function requestOptions(json: Json): PublicKeyCredentialRequestOptions {
  const pkc = PublicKeyCredential as unknown as PkcStatics;
  if (typeof pkc.parseRequestOptionsFromJSON === "function") {
    return pkc.parseRequestOptionsFromJSON(json) as PublicKeyCredentialRequestOptions;
  }
  const out: Json = { ...json, challenge: b64urlToBytes(String(json["challenge"])) };
  const allow = descriptors(json["allowCredentials"]);
  if (allow) out["allowCredentials"] = allow;
  return out as unknown as PublicKeyCredentialRequestOptions;
}

/** PublicKeyCredential.toJSON(), or the same by hand where it is missing. */
function credentialJSON(cred: PublicKeyCredential): Json {
  const c = cred as PublicKeyCredential & { toJSON?: () => Json };
  if (typeof c.toJSON === "function") return c.toJSON();
  const r = cred.response as AuthenticatorResponse & Partial<AuthenticatorAttestationResponse & AuthenticatorAssertionResponse>;
  const response: Json = { clientDataJSON: bytesToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response["attestationObject"] = bytesToB64url(r.attestationObject);
    response["transports"] = typeof r.getTransports === "function" ? r.getTransports() : [];
    const key = typeof r.getPublicKey === "function" ? r.getPublicKey() : null;
    if (key) response["publicKey"] = bytesToB64url(key);
    if (typeof r.getPublicKeyAlgorithm === "function") response["publicKeyAlgorithm"] = r.getPublicKeyAlgorithm();
    if (typeof r.getAuthenticatorData === "function") response["authenticatorData"] = bytesToB64url(r.getAuthenticatorData());
  } else {
    if (r.authenticatorData) response["authenticatorData"] = bytesToB64url(r.authenticatorData);
    if (r.signature) response["signature"] = bytesToB64url(r.signature);
    if (r.userHandle) response["userHandle"] = bytesToB64url(r.userHandle);
  }
  return {
    id: cred.id,
    rawId: bytesToB64url(cred.rawId),
    type: cred.type,
    response,
    authenticatorAttachment: cred.authenticatorAttachment ?? null,
    clientExtensionResults: cred.getClientExtensionResults(),
  };
}

/** A WebAuthn failure of the browser as a GatehouseError (status 0), see PasskeyErrorCode. */
function passkeyError(err: unknown, creating: boolean): GatehouseError {
  if (err instanceof GatehouseError) return err;
  const name = err instanceof Error || (typeof DOMException === "function" && err instanceof DOMException) ? (err as Error).name : "";
  const message = err instanceof Error ? err.message : String(err);
  let code: PasskeyErrorCode = "passkey_failed";
  if (name === "NotAllowedError" || name === "AbortError") code = "passkey_cancelled";
  else if (name === "InvalidStateError" && creating) code = "passkey_exists";
  else if (name === "NotSupportedError" || name === "SecurityError") code = "passkeys_unsupported";
  return new GatehouseError(0, code, message || name || "WebAuthn failed", { code, dom_exception: name, detail: message });
}

/** navigator.credentials.create/get for a server's JSON options; resolves to the credential's JSON. */
async function webauthn(kind: "create" | "get", publicKey: Json): Promise<Json> {
  if (!supportsPasskeys()) {
    throw new GatehouseError(0, "passkeys_unsupported", "This browser does not support passkeys.", { code: "passkeys_unsupported" });
  }
  let cred: Credential | null;
  try {
    cred = kind === "create"
      ? await navigator.credentials.create({ publicKey: creationOptions(publicKey) })
      : await navigator.credentials.get({ publicKey: requestOptions(publicKey) });
  } catch (err) {
    throw passkeyError(err, kind === "create");
  }
  if (!cred) throw passkeyError(new DOMException("No credential was returned.", "NotAllowedError"), false);
  return credentialJSON(cred as PublicKeyCredential);
}

// ------------------------------------------------------ identity providers

/** The provider's return in a URL fragment ("#error=..." or "#login_code=..."), or null. */
export function parseProviderReturn(hash: string): ProviderReturn | null {
  let params: URLSearchParams;
  try {
    params = new URLSearchParams(hash.replace(/^#/, ""));
  } catch {
    return null;
  }
  const code = params.get("login_code");
  if (code) return { loginCode: code };
  const error = params.get("error");
  if (error !== null) {
    const out: { error: string; mfaToken?: string; methods?: MfaMethod[] } = { error: error.trim() || "unknown_error" };
    const mfaToken = params.get("mfa_token");
    if (out.error === "mfa_required" && mfaToken) {
      out.mfaToken = mfaToken;
      out.methods = (params.get("methods") ?? "").split(",").filter((m): m is MfaMethod => ["totp", "recovery_code", "passkey"].includes(m));
    }
    return out;
  }
  const linked = params.get("linked");
  if (linked !== null) return { linked };
  return null;
}

/**
 * Reads what a provider's callback put into this page's fragment (see `ProviderReturn`) and
 * removes the fragment from the address bar and the history entry (`history.replaceState`),
 * so a login code is never left there to be copied, bookmarked or read later. Call it first
 * on the `redirect_to` page, before anything else reads the address; null when the page was
 * not opened by a provider's callback (the fragment is then left alone).
 */
export function takeProviderReturn(): ProviderReturn | null {
  if (typeof location === "undefined") return null;
  const ret = parseProviderReturn(location.hash);
  if (ret !== null && typeof history !== "undefined") {
    history.replaceState(history.state, "", location.pathname + location.search);
  }
  return ret;
}

/** Whether a 401 is about the access token (so a refresh may help), read from a copy of its body. */
async function tokenProblem(res: Response): Promise<boolean> {
  try {
    const body = (await res.clone().json()) as { code?: unknown; error?: unknown };
    const code = typeof body?.code === "string" ? body.code : body?.error;
    return typeof code !== "string" || code === "invalid_token";
  } catch {
    return true;
  }
}

/** True when baseUrl points at another origin than the page's (the CSRF cookie is unreadable). */
function isCrossOrigin(base: string): boolean {
  if (base === "" || typeof location === "undefined") return false;
  try {
    return new URL(base, location.href).origin !== location.origin;
  } catch {
    return false;
  }
}

export class GatehouseClient extends EventTarget {
  private readonly base: string;
  private readonly marginMs: number;
  private readonly autoRefresh: boolean;
  private readonly lockName: string;
  private readonly peerWaitMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => number;
  private readonly channel: BroadcastChannel | null;
  private readonly crossOrigin: boolean;

  private state: State = "unknown";
  private token: string | null = null;
  private expiresAt = 0;
  private lifetimeMs = 0;
  private currentUser: User | null = null;
  private currentSessionId: string | null = null;
  // Cross-origin pages only: the session's CSRF token, in memory (never web storage).
  private csrf: string | null = null;
  private generation = 0; // bumped whenever the access token changes
  private peerResults = 0; // refresh results received from other tabs
  private lastPeerResult: PeerMessage["type"] | null = null;
  private inflight: Promise<boolean> | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private peerWaiters: (() => void)[] = [];

  constructor(options: ClientOptions = {}) {
    super();
    this.base = (options.baseUrl ?? "").replace(/\/+$/, "");
    this.marginMs = options.refreshMarginMs ?? 30_000;
    this.autoRefresh = options.autoRefresh ?? true;
    this.lockName = options.channelName ?? "gatehouse-refresh";
    this.peerWaitMs = options.peerWaitMs ?? 2_000;
    const f = options.fetch ?? globalThis.fetch;
    this.fetchImpl = (input, init) => f.call(globalThis, input, init);
    this.now = options.now ?? Date.now;
    this.crossOrigin = isCrossOrigin(this.base);
    this.channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(options.channelName ?? "gatehouse-auth") : null;
    this.channel?.addEventListener("message", (e: MessageEvent) => this.onPeerMessage(e.data as PeerMessage));
  }

  // ---------------------------------------------------------------- state

  /** The signed-in user, or null. */
  get user(): User | null {
    return this.currentUser;
  }
  /** The id of this browser's session, or null. */
  get sessionId(): string | null {
    return this.currentSessionId;
  }
  get authenticated(): boolean {
    return this.state === "authenticated";
  }

  /** Subscribe to "login" | "logout" | "token"; returns an unsubscribe function. */
  on(type: "login", fn: (d: LoginEventDetail) => void): () => void;
  on(type: "logout", fn: (d: LogoutEventDetail) => void): () => void;
  on(type: "token", fn: (d: TokenEventDetail) => void): () => void;
  on(type: string, fn: (d: never) => void): () => void {
    const h = (e: Event) => fn((e as CustomEvent).detail as never);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  /** Stops timers and leaves the broadcast channel. */
  close(): void {
    this.clearTimer();
    this.channel?.close();
  }

  private emit(type: string, detail: unknown): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  private tokenUsable(): boolean {
    return this.token !== null && this.now() < this.expiresAt - this.effectiveMargin();
  }

  private effectiveMargin(): number {
    return Math.min(this.marginMs, this.lifetimeMs / 4);
  }

  private setToken(accessToken: string, expiresAt: number, lifetimeMs: number, sessionId: string, user: User): void {
    const wasAuthenticated = this.state === "authenticated";
    this.token = accessToken;
    this.expiresAt = expiresAt;
    this.lifetimeMs = lifetimeMs;
    this.currentSessionId = sessionId;
    this.currentUser = user;
    this.state = "authenticated";
    this.generation++;
    this.schedule();
    if (!wasAuthenticated) this.emit("login", { user } satisfies LoginEventDetail);
    this.emit("token", { expiresAt } satisfies TokenEventDetail);
  }

  private setSignedOut(reason: LogoutReason, broadcast: boolean): void {
    const was = this.state;
    this.token = null;
    this.expiresAt = 0;
    this.currentUser = null;
    this.currentSessionId = null;
    this.csrf = null;
    this.state = "signed-out";
    this.generation++;
    this.clearTimer();
    if (broadcast) this.postPeer({ type: "logout", reason });
    // Only a session that really ended is news: a first visit without one ("unknown" and
    // no_session) stays quiet, so apps do not greet new visitors with "session ended".
    const ended = was === "authenticated" || (was === "unknown" && reason !== "no_session");
    if (ended) this.emit("logout", { reason } satisfies LogoutEventDetail);
  }

  private acceptTokenResponse(body: TokenResponse, broadcast: boolean): void {
    const lifetimeMs = Math.max(0, body.expires_in * 1000);
    const expiresAt = this.now() + lifetimeMs;
    if (this.crossOrigin && typeof body.csrf_token === "string") this.csrf = body.csrf_token;
    this.setToken(body.access_token, expiresAt, lifetimeMs, body.session_id, body.user);
    if (broadcast) {
      this.postPeer({
        type: "token", accessToken: body.access_token, expiresAt, lifetimeMs, sessionId: body.session_id, user: body.user,
        csrfToken: this.csrf,
      });
    }
  }

  private schedule(): void {
    this.clearTimer();
    if (!this.autoRefresh || this.token === null) return;
    const delay = Math.max(0, this.expiresAt - this.effectiveMargin() - this.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.refresh().catch(() => undefined);
    }, Math.min(delay, 2 ** 31 - 1));
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  // ------------------------------------------------------- cross-tab sync

  private postPeer(msg: PeerMessage): void {
    try {
      this.channel?.postMessage(msg);
    } catch {
      /* channel closed */
    }
  }

  private onPeerMessage(msg: PeerMessage): void {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "token") {
      // Adopt the token another tab just obtained (it is the newest one).
      if (this.crossOrigin && typeof msg.csrfToken === "string") this.csrf = msg.csrfToken;
      if (typeof msg.accessToken === "string" && msg.accessToken !== this.token) {
        this.setToken(msg.accessToken, msg.expiresAt, msg.lifetimeMs, msg.sessionId, msg.user);
      }
    } else if (msg.type === "logout") {
      this.setSignedOut(msg.reason, false);
    } else if (msg.type !== "refresh-failed") {
      return;
    }
    this.peerResults++;
    this.lastPeerResult = msg.type;
    const waiters = this.peerWaiters;
    this.peerWaiters = [];
    for (const w of waiters) w();
  }

  private waitForPeer(seen: number): Promise<void> {
    if (this.peerResults > seen) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, this.peerWaitMs);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.peerWaiters.push(done);
    });
  }

  // ------------------------------------------------------------- refresh

  /**
   * Obtains a fresh access token using the refresh cookie. Concurrent calls in a tab share
   * one request; tabs take turns through a Web Lock, and a tab that waited adopts the
   * result another tab broadcast instead of refreshing again. Resolves true when a usable
   * token is available, false when signed out. Network/server failures reject.
   */
  refresh(): Promise<boolean> {
    if (this.inflight) return this.inflight;
    const p = this.refreshCoordinated().finally(() => {
      if (this.inflight === p) this.inflight = null;
    });
    this.inflight = p;
    return p;
  }

  private async refreshCoordinated(): Promise<boolean> {
    const startGen = this.generation;
    const seen = this.peerResults;
    const locks = typeof navigator !== "undefined" ? navigator.locks : undefined;
    if (!locks) return this.refreshLocked(startGen, seen, false);
    let contended = false;
    const first = await locks.request(this.lockName, { ifAvailable: true }, async (lock) => {
      if (!lock) {
        contended = true;
        return false;
      }
      return this.refreshLocked(startGen, seen, false);
    });
    if (!contended) return first;
    return locks.request(this.lockName, () => this.refreshLocked(startGen, seen, true));
  }

  private async refreshLocked(startGen: number, seen: number, waited: boolean): Promise<boolean> {
    // Another tab may have refreshed (and broadcast its token) while we were waiting.
    if (this.generation !== startGen && this.tokenUsable()) return true;
    if (this.state === "signed-out" && this.generation !== startGen) return false;
    if (waited) {
      // The tab that held the lock posts its result before releasing it; the message may
      // still be in flight, so give it a moment before refreshing ourselves.
      await this.waitForPeer(seen);
      if (this.peerResults > seen) {
        if (this.lastPeerResult === "token" && this.tokenUsable()) return true;
        if (this.lastPeerResult === "logout") return false;
      }
    }
    return this.refreshNow();
  }

  /**
   * The session's CSRF token: the readable cookie on the auth server's own origin; on
   * another origin the copy in memory, else (after a reload) GET /auth/csrf, which
   * answers allowed origins only. Null when this browser has no session.
   */
  private async csrfToken(): Promise<string | null> {
    if (!this.crossOrigin) return readCookie(CSRF_COOKIE);
    if (this.csrf !== null) return this.csrf;
    let res: Response;
    try {
      res = await this.fetchImpl(this.base + "/auth/csrf", { method: "GET", credentials: "include" });
    } catch (err) {
      throw new GatehouseError(0, "network_error", String(err));
    }
    if (!res.ok) throw await toError(res);
    const body = (await res.json()) as { csrf_token?: unknown };
    this.csrf = typeof body.csrf_token === "string" ? body.csrf_token : null;
    return this.csrf;
  }

  private async refreshNow(): Promise<boolean> {
    const res = await this.postRefresh(true);
    if (res === null) {
      // No cookie-mode session in this browser: nothing to refresh (and no 401 to log).
      this.setSignedOut("no_session", this.state === "authenticated");
      return false;
    }
    if (res.ok) {
      this.acceptTokenResponse((await res.json()) as TokenResponse, true);
      return true;
    }
    const err = await toError(res);
    if (SESSION_END_CODES.has(err.code)) {
      this.setSignedOut(err.code as LogoutReason, true);
      return false;
    }
    this.postPeer({ type: "refresh-failed" });
    throw err;
  }

  /** POST /auth/refresh with the CSRF header; null when there is no session to refresh. */
  private async postRefresh(mayRetry: boolean): Promise<Response | null> {
    const remembered = this.crossOrigin && this.csrf !== null;
    let csrf: string | null;
    let res: Response;
    try {
      csrf = await this.csrfToken();
      if (csrf === null) return null;
      res = await this.fetchImpl(this.base + "/auth/refresh", {
        method: "POST",
        credentials: "include",
        headers: { "X-CSRF-Token": csrf },
      });
    } catch (err) {
      this.postPeer({ type: "refresh-failed" });
      throw err instanceof GatehouseError ? err : new GatehouseError(0, "network_error", String(err));
    }
    if (res.status === 403 && remembered && mayRetry) {
      // The remembered token may belong to a session replaced in another window of this
      // browser (a new login there): ask the server for the current one, once.
      this.csrf = null;
      return this.postRefresh(false);
    }
    return res;
  }

  /**
   * Resumes an existing session from the refresh cookie (call once on page load).
   * Resolves to the user, or null when there is no session.
   */
  async resume(): Promise<User | null> {
    if (this.state === "authenticated" && this.tokenUsable()) return this.currentUser;
    return (await this.refresh()) ? this.currentUser : null;
  }

  /** A usable access token (refreshing first if needed), or null when signed out. */
  async getAccessToken(): Promise<string | null> {
    if (this.state === "signed-out") return null;
    if (!this.tokenUsable()) {
      try {
        await this.refresh();
      } catch {
        /* transient: fall through with whatever we have */
      }
    }
    return this.token;
  }

  /**
   * Called after a request sent with `usedToken` got a 401. Refreshes unless the token has
   * already been replaced since; resolves true if a retry makes sense.
   */
  async handleUnauthorized(usedToken: string | null): Promise<boolean> {
    if (this.state === "signed-out") return false;
    if (this.token !== null && this.token !== usedToken && this.tokenUsable()) return true;
    try {
      return await this.refresh();
    } catch {
      return false;
    }
  }

  // ------------------------------------------------------- fetch wrapper

  /**
   * fetch() with the access token attached: for your own APIs (it sends the token to
   * whatever URL it is given). URLs resolve like window.fetch's, against the page, so
   * "/api/items" goes to the page's origin, not to the Gatehouse server. Refreshes first
   * if the token is (nearly) expired; after any 401 to a request that carried the token,
   * refreshes once and retries the request once.
   */
  async fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const original = new Request(input, init);
    const token = await this.getAccessToken();
    const res = await this.send(original.clone(), token);
    if (res.status !== 401 || token === null) return res;
    if (!(await this.handleUnauthorized(token)) || this.token === null) return res;
    return this.send(original, this.token);
  }

  private send(req: Request, token: string | null): Promise<Response> {
    const headers = new Headers(req.headers);
    if (token !== null) headers.set("Authorization", "Bearer " + token);
    return this.fetchImpl(new Request(req, { headers }));
  }

  /**
   * A call to the Gatehouse server (path under baseUrl) with the access token. Like
   * fetch(), but a 401 that is about something else than the token (a wrong
   * current_password: invalid_credentials) is not answered with a refresh and a retry.
   */
  private async json<T>(path: string, init?: RequestInit): Promise<T | undefined> {
    const original = new Request(this.base + path, init);
    const token = await this.getAccessToken();
    let res = await this.send(original.clone(), token);
    if (res.status === 401 && token !== null && (await tokenProblem(res))) {
      if ((await this.handleUnauthorized(token)) && this.token !== null) res = await this.send(original, this.token);
    }
    if (!res.ok) throw await toError(res);
    if (res.status === 204) return undefined;
    return (await res.json()) as T;
  }

  // --------------------------------------------------------------- API

  /** POSTs JSON without an access token; rejects with a GatehouseError unless 2xx. */
  private async post(path: string, body: Record<string, unknown>, credentials: RequestCredentials): Promise<Response> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.base + path, {
        method: "POST",
        credentials,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch (err) {
      throw new GatehouseError(0, "network_error", String(err));
    }
    if (!res.ok) throw await toError(res);
    return res;
  }

  /** Signs in with a token response (cookie mode): the refresh token arrives as a cookie. */
  private async credentials(path: string, body: Record<string, unknown>): Promise<User> {
    const res = await this.post(path, body, "include");
    this.acceptTokenResponse((await res.json()) as TokenResponse, true);
    return this.currentUser as User;
  }

  /** A user object the server returned: adopted as the current user when it is the same user. */
  private adoptUser(user: User): User {
    if (this.currentUser !== null && this.currentUser.id === user.id) this.currentUser = user;
    return user;
  }

  /** Signs in; the refresh token is set as an HttpOnly cookie by the server. Rejects with
   * an `MfaRequiredError` when the account has a second factor (then call `verifyMfa`). */
  login(email: string, password: string): Promise<User> {
    return this.credentials("/auth/login", { email, password });
  }

  /** Creates an account and signs in. */
  signup(email: string, password: string, name?: string): Promise<User> {
    return this.credentials("/auth/signup", name === undefined ? { email, password } : { email, password, name });
  }

  /**
   * Logs out: "local" ends this browser's session (all its tabs), "others" every other
   * session of the user, "global" all of them including this one.
   */
  async logout(scope: LogoutScope = "local"): Promise<void> {
    const token = this.state === "signed-out" ? null : await this.getAccessToken();
    const headers: Record<string, string> = {};
    // With an access token the server needs no CSRF token; without one the refresh cookie
    // identifies the session, and that needs the CSRF header.
    const csrf = token !== null && this.crossOrigin ? this.csrf : await this.csrfToken().catch(() => null);
    if (csrf !== null) headers["X-CSRF-Token"] = csrf;
    if (token !== null) headers["Authorization"] = "Bearer " + token;
    let res: Response | null = null;
    try {
      // "others" keeps this session: authenticate with the access token only and do not let
      // the response touch this browser's cookies (credentials "omit" ignores Set-Cookie).
      const credentials: RequestCredentials = scope === "others" && token !== null ? "omit" : "include";
      res = await this.fetchImpl(this.base + "/auth/logout?scope=" + scope, { method: "POST", credentials, headers });
    } finally {
      // Whatever the server said, a local/global logout signs this browser out.
      if (scope !== "others") this.setSignedOut("logout", true);
    }
    if (!res.ok && !(scope !== "others" && res.status === 401)) throw await toError(res);
  }

  /** The current user, from the server. */
  async me(): Promise<User> {
    const body = await this.json<{ user: User }>("/auth/me");
    return (body as { user: User }).user;
  }

  /** This user's sessions (devices); `current` marks this browser's. */
  async sessions(): Promise<Session[]> {
    const body = await this.json<{ sessions: Session[] }>("/auth/sessions");
    return (body as { sessions: Session[] }).sessions;
  }

  /** The signed-in user's own recent security events (sign-ins, failed ones, changes
   * of password, email and second factors, what an admin did to the account), newest
   * first; 50 a page unless `limit` (1 to 200) says otherwise. */
  async activity(options: { after?: string; limit?: number } = {}): Promise<AuditPage> {
    return (await this.json<AuditPage>("/auth/activity" + auditQueryString({ ...options }))) as AuditPage;
  }

  /** Admins: the audit log, newest first, filtered by user and type. Rejects with
   * `forbidden` (403) for anyone else. */
  async auditEvents(query: AuditQuery = {}): Promise<AuditPage> {
    return (await this.json<AuditPage>("/admin/audit" + auditQueryString({ ...query }))) as AuditPage;
  }

  /** Ends one of this user's sessions. */
  async deleteSession(id: string): Promise<void> {
    await this.json("/auth/sessions/" + encodeURIComponent(id), { method: "DELETE" });
    if (id === this.currentSessionId) this.setSignedOut("logout", true);
  }

  /** Changes the password; every other session of the user is ended. */
  async changePassword(currentPassword: string, newPassword: string): Promise<void> {
    await this.json("/auth/password", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ current_password: currentPassword, new_password: newPassword }),
    });
  }

  // ------------------------------------------------------------ mail flows

  /** Mails the signed-in user a new verification link (POST /auth/email/verify/send). Rejects
   * with `already_verified` (409) when the address is verified. */
  async sendVerificationEmail(): Promise<void> {
    await this.json("/auth/email/verify/send", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  }

  /** Verifies the address with the token of a verification link; resolves to the user
   * (`email_verified: true`). Rejects with `invalid_link` (400). */
  async verifyEmail(token: string): Promise<User> {
    const res = await this.post("/auth/email/verify", { token }, "omit");
    return this.adoptUser(((await res.json()) as { user: User }).user);
  }

  /** Asks for a password-reset mail. Resolves (202) whether or not the address has an account. */
  async forgotPassword(email: string): Promise<void> {
    await this.post("/auth/password/forgot", { email }, "omit");
  }

  /** Sets a new password with the token of a reset link. Every session of the user ends
   * (sign in again afterwards). Rejects with `invalid_link` (400), `weak_password` or
   * `validation_failed` (422). */
  async resetPassword(token: string, newPassword: string): Promise<void> {
    await this.post("/auth/password/reset", { token, new_password: newPassword }, "omit");
  }

  /** Asks for a sign-in mail (a link and a 6-digit code). Resolves (202) whether or not the
   * address has an account. */
  async requestMagicLink(email: string): Promise<void> {
    await this.post("/auth/magic-link", { email }, "omit");
  }

  /** Signs in with a magic link's token, or with the address and the mailed code (cookie
   * mode, like login: fires "login"). Rejects with `invalid_link` (400) or `invalid_code` (401),
   * or with an `MfaRequiredError` when the account has a second factor. */
  verifyMagicLink(proof: MagicLinkProof): Promise<User> {
    const body = "token" in proof ? { token: proof.token } : { email: proof.email, code: proof.code };
    return this.credentials("/auth/magic-link/verify", body);
  }

  /** Starts changing the signed-in user's address: a confirmation link goes to the new one.
   * Rejects with `email_taken` (409) or `invalid_credentials` (401, wrong password). */
  async changeEmail(newEmail: string, currentPassword: string): Promise<void> {
    await this.json("/auth/email/change", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ new_email: newEmail, current_password: currentPassword }),
    });
  }

  /** Confirms an address change with the token of the link mailed to the new address;
   * resolves to the user with the new, verified address. Rejects with `invalid_link` (400). */
  async confirmEmailChange(token: string): Promise<User> {
    const res = await this.post("/auth/email/change/confirm", { token }, "omit");
    return this.adoptUser(((await res.json()) as { user: User }).user);
  }

  // -------------------------------------------------------- second factors

  /**
   * Completes a sign-in that answered `MfaRequiredError`: the second factor, as a 6-digit
   * code from the authenticator app (`"totp"`) or one of the recovery codes
   * (`"recovery_code"`). Signs in like `login` (cookie mode, fires "login", other tabs adopt
   * the session). Rejects with `invalid_code` (401); after 5 wrong codes, or 5 minutes, the
   * mfa token is dead and the sign-in starts over.
   */
  verifyMfa(mfaToken: string, method: "totp" | "recovery_code", code: string): Promise<User> {
    return this.credentials("/auth/mfa/verify", { mfa_token: mfaToken, method, code });
  }

  /**
   * Completes a sign-in that answered `MfaRequiredError` (with `"passkey"` among its
   * `methods`) with a passkey of that user: the browser asks for it. Signs in like `login`.
   * Rejects with `invalid_credential` (401: not one of this user's passkeys, or removed), or a
   * `PasskeyErrorCode` (e.g. `passkey_cancelled`); the mfa token stays usable for another try.
   */
  verifyMfaWithPasskey(mfaToken: string): Promise<User> {
    return this.passkeyLogin(mfaToken);
  }

  // --------------------------------------------------------------- passkeys

  /**
   * Signs in with a passkey, no email or password needed: the browser offers the passkeys it
   * has for this server. Cookie mode, like `login` (fires "login"). Rejects with
   * `invalid_credential` (401: a passkey the server does not know, e.g. removed from the
   * account) or a `PasskeyErrorCode` (`passkey_cancelled` when the user cancelled or the
   * device has none).
   */
  signInWithPasskey(): Promise<User> {
    return this.passkeyLogin(undefined);
  }

  private async passkeyLogin(mfaToken: string | undefined): Promise<User> {
    const withToken: Record<string, unknown> = mfaToken === undefined ? {} : { mfa_token: mfaToken };
    const res = await this.post("/auth/passkeys/login/begin", withToken, "omit");
    const begin = (await res.json()) as { publicKey: Json; challenge_id: string };
    const credential = await webauthn("get", begin.publicKey);
    return this.credentials("/auth/passkeys/login/finish", { challenge_id: begin.challenge_id, credential, ...withToken });
  }

  /**
   * Adds a passkey to the signed-in user's account: the browser asks the user to create one
   * (on this device, a phone or a security key). `name` tells the user's passkeys apart
   * ("Work laptop"). Resolves to the new passkey. Rejects with `invalid_credential` (400), or
   * a `PasskeyErrorCode`: `passkey_exists` when this device already holds one of the account's
   * passkeys, `passkey_cancelled` when the user cancelled.
   */
  async registerPasskey(name?: string): Promise<Passkey> {
    const begin = (await this.postJson<{ publicKey: Json }>("/auth/passkeys/register/begin", {})) as { publicKey: Json };
    const credential = await webauthn("create", begin.publicKey);
    const trimmed = name?.trim();
    const body: Record<string, unknown> = trimmed ? { credential, name: trimmed } : { credential };
    return ((await this.postJson<{ passkey: Passkey }>("/auth/passkeys/register/finish", body)) as { passkey: Passkey }).passkey;
  }

  /** The signed-in user's passkeys. */
  async listPasskeys(): Promise<Passkey[]> {
    const body = (await this.json<{ passkeys: Passkey[] }>("/auth/passkeys")) as { passkeys: Passkey[] };
    return body.passkeys ?? [];
  }

  /** Removes one of the signed-in user's passkeys. Rejects with `last_login_method` (409) when
   * nothing else would be left to sign in with (no password, no other passkey or provider). */
  async deletePasskey(id: string): Promise<void> {
    await this.json("/auth/passkeys/" + encodeURIComponent(id), { method: "DELETE" });
  }

  /** The signed-in user's second factors (from GET /auth/me); updates `user`. */
  async mfaStatus(): Promise<MfaStatus> {
    const body = (await this.json<{ user: User; mfa?: Partial<MfaStatus> }>("/auth/me")) as { user: User; mfa?: Partial<MfaStatus> };
    if (body.user) this.adoptUser(body.user);
    return { totp: body.mfa?.totp === true, passkeys: typeof body.mfa?.passkeys === "number" ? body.mfa.passkeys : 0 };
  }

  private postJson<T>(path: string, body: Record<string, unknown>, method = "POST"): Promise<T | undefined> {
    return this.json<T>(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  }

  /** Starts setting up an authenticator app (needs the current password). Nothing is on
   * until `confirmTotp`. Rejects with `invalid_credentials` (401, wrong password; the session
   * stays) or `already_enabled` (409). */
  async startTotpEnrolment(currentPassword: string): Promise<TotpEnrolment> {
    return (await this.postJson<TotpEnrolment>("/auth/mfa/totp", { current_password: currentPassword })) as TotpEnrolment;
  }

  /** Turns the authenticator app on with a code from it; resolves to the 10 recovery codes,
   * which the server shows this once. Rejects with `invalid_code` (401). */
  async confirmTotp(code: string): Promise<string[]> {
    const body = await this.postJson<{ recovery_codes: string[] }>("/auth/mfa/totp/confirm", { code });
    return (body as { recovery_codes: string[] }).recovery_codes;
  }

  /** Turns the authenticator app off, with a code from it or a recovery code. Rejects with
   * `invalid_code` (401). */
  async disableTotp(code: string): Promise<void> {
    await this.postJson("/auth/mfa/totp", { code }, "DELETE");
  }

  /** Replaces the recovery codes (the old ones stop working), with a code from the
   * authenticator app; resolves to the 10 new ones. Rejects with `invalid_code` (401). */
  async regenerateRecoveryCodes(code: string): Promise<string[]> {
    const body = await this.postJson<{ recovery_codes: string[] }>("/auth/mfa/recovery-codes", { code });
    return (body as { recovery_codes: string[] }).recovery_codes;
  }

  // ---------------------------------------------------- identity providers

  /** The external identity providers to offer sign-in buttons for (GET /auth/idps). */
  async providers(): Promise<IdentityProvider[]> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.base + "/auth/idps", { method: "GET", credentials: "omit" });
    } catch (err) {
      throw new GatehouseError(0, "network_error", String(err));
    }
    if (!res.ok) throw await toError(res);
    const body = (await res.json()) as { providers?: IdentityProvider[] };
    return Array.isArray(body.providers) ? body.providers : [];
  }

  /**
   * The URL that starts a sign-in with `provider` (`/auth/idps/<provider>/authorize`), for
   * apps that navigate themselves; `loginWith` and `linkWith` go there. With `link: true` it
   * links the provider's account to the user signed in in this browser (refresh cookie).
   */
  authorizeUrl(provider: string, options: LoginWithOptions & { link?: boolean } = {}): string {
    const params = new URLSearchParams();
    params.set("redirect_to", this.returnUrl(options.redirectTo));
    if (options.transport === "body") params.set("token_transport", "body");
    if (options.link) params.set("link", "1");
    const url = `${this.base}/auth/idps/${encodeURIComponent(provider)}/authorize?${params.toString()}`;
    // Absolute, also with the default baseUrl (the page's origin): apps may open it anywhere.
    return typeof location === "undefined" ? url : new URL(url, location.href).href;
  }

  /** An absolute redirect_to: the given URL or path resolved against the page, else the page without its fragment. */
  private returnUrl(redirectTo: string | undefined): string {
    const here = typeof location === "undefined" ? "" : location.href;
    const url = new URL(redirectTo ?? here, here || undefined);
    url.hash = "";
    return url.href;
  }

  /**
   * Signs in with an external provider: the browser leaves the page for the provider's login
   * and consent, and Gatehouse's callback sends it back to `redirectTo` (default: this page).
   * There, call `takeProviderReturn()` first: an `error` says why no session was made
   * (`account_exists`: an account with this address exists and must link the provider from
   * a signed-in session; `access_denied`: the user cancelled at the provider;
   * `mfa_required` with an mfa token, as after a password). Without an error, cookie
   * transport came back signed in: `resume()` picks the session up (amr `fed`).
   * With `transport: "body"` the return carries a `loginCode` for `exchangeLoginCode`.
   */
  loginWith(provider: string, options: LoginWithOptions = {}): void {
    location.assign(this.authorizeUrl(provider, options));
  }

  /**
   * Links an account at `provider` to the user signed in in this browser: like `loginWith`,
   * through the provider and back to `redirectTo` (default: this page), where
   * `takeProviderReturn()` reports `{ linked }` or an `error` (`login_required` when this
   * browser has no session); the session is unchanged, `resume()` as usual. Cookie sessions only: the server identifies the user by the
   * refresh cookie.
   */
  linkWith(provider: string, options: { redirectTo?: string } = {}): void {
    location.assign(this.authorizeUrl(provider, { ...options, link: true }));
  }

  /**
   * Redeems the `loginCode` of a body-transport return (POST /auth/idps/exchange; single use,
   * 60 s) for a body-mode token response: access and refresh token for an app that keeps its
   * tokens itself. It does not sign this client in (this client refreshes by cookie). Rejects
   * with a `GatehouseError`, e.g. for a code used twice or too late.
   */
  async exchangeLoginCode(loginCode: string): Promise<TokenSet> {
    const res = await this.post("/auth/idps/exchange", { login_code: loginCode }, "omit");
    return (await res.json()) as TokenSet;
  }

  /** The external accounts linked to the signed-in user (GET /auth/identities). */
  async identities(): Promise<Identity[]> {
    const body = (await this.json<{ identities: Identity[] }>("/auth/identities")) as { identities?: Identity[] };
    return body.identities ?? [];
  }

  /** Unlinks one of the user's external accounts. Rejects with `last_login_method` (409) when
   * nothing else would be left to sign in with (no password, passkey or other provider). */
  async unlinkIdentity(id: string): Promise<void> {
    await this.json("/auth/identities/" + encodeURIComponent(id), { method: "DELETE" });
  }

  // ---------------------------------------------------------- OAuth provider

  /**
   * Continues a sign-in request of Gatehouse's OAuth provider (`/account?oauth_request=<id>`)
   * for the signed-in user (POST /oauth2/authorize/continue). Resolves to `{ redirect }`, where
   * the browser goes next (`location.assign`): the app's redirect URI with a code, or with
   * `error=access_denied` when `consent` is false. Rejects with a `ConsentRequiredError` (403)
   * when a third-party app has no consent yet and `consent` was not given: ask the user and
   * call again with true or false. `invalid_request` (400): the request expired or was used;
   * `invalid_token` (401): not signed in.
   */
  async oauthContinue(requestId: string, consent?: boolean): Promise<OAuthContinuation> {
    const body: Record<string, unknown> = { oauth_request: requestId };
    if (consent !== undefined) body["consent"] = consent;
    const res = (await this.postJson<{ redirect?: unknown }>("/oauth2/authorize/continue", body)) ?? {};
    if (typeof res.redirect !== "string" || res.redirect === "") {
      throw new GatehouseError(200, "invalid_response", "The server answered without a redirect.", res as Record<string, unknown>);
    }
    return { redirect: res.redirect };
  }

  /** The apps the signed-in user allowed to use their account (GET /auth/consents). */
  async consents(): Promise<OAuthConsent[]> {
    const body = (await this.json<{ consents?: OAuthConsent[] }>("/auth/consents")) ?? {};
    return Array.isArray(body.consents) ? body.consents : [];
  }

  /** Takes an app's access away (DELETE /auth/consents/{client_id}): its consent and the
   * user's sessions of that app end; it asks again next time. Rejects with `not_found` (404). */
  async revokeConsent(clientId: string): Promise<void> {
    await this.json("/auth/consents/" + encodeURIComponent(clientId), { method: "DELETE" });
  }
}

/** The query string of an audit listing: only the parameters given (the server
 * refuses empty and unknown ones). */
function auditQueryString(q: Record<string, string | number | undefined>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== "") params.set(k, String(v));
  const s = params.toString();
  return s ? "?" + s : "";
}
