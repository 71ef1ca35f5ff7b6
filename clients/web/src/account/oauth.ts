// Sign-in requests of Gatehouse's OAuth provider: GET /oauth2/authorize sends the browser to
// /account?oauth_request=<id>. Like ./link and ./provider this runs before anything else of
// the page (it is imported before ./provider, which replaces the whole address): it takes the
// id out of the query, so it is neither left in the address bar and the history nor sent in
// a Referer, and keeps it in sessionStorage. The id must survive what signing in may take in
// this tab: a second-factor step, a mailed code, a round trip through an identity provider
// (which reloads the page at /account?idp=<name>). sessionStorage is per tab, so another tab
// of the account page never continues this tab's request.
//
// The id alone grants nothing: continuing it needs the signed-in user's access token, and the
// server lets it be used once, for 10 minutes.

const KEY = "gatehouse.oauth_request";

/** How long a stored id is worth continuing. The server keeps a request 10 minutes; an older
 * one is still tried (the server's "expired" answer is told to the user) until it is so old
 * that the tab was surely left for something else. */
const KEEP_MS = 30 * 60_000;

interface Stored {
  id: string;
  at: number;
}

/** Where the id lives when the browser refuses sessionStorage (then it survives no reload). */
let memory: Stored | null = null;

function write(value: Stored | null): void {
  memory = value;
  try {
    if (value === null) sessionStorage.removeItem(KEY);
    else sessionStorage.setItem(KEY, JSON.stringify(value));
  } catch {
    /* storage disabled: memory only */
  }
}

function read(): Stored | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (raw === null) return memory;
    const v = JSON.parse(raw) as Partial<Stored>;
    if (typeof v.id === "string" && typeof v.at === "number") return { id: v.id, at: v.at };
  } catch {
    return memory;
  }
  return null;
}

/** The sign-in request waiting in this tab, or null. */
export function oauthRequest(): string | null {
  const v = read();
  if (v === null) return null;
  if (Date.now() - v.at > KEEP_MS || Date.now() < v.at) {
    write(null);
    return null;
  }
  return v.id;
}

/** Forgets the request: it was answered, or it is dead. */
export function forgetOAuthRequest(): void {
  write(null);
}

function takeOAuthRequest(): void {
  const query = new URLSearchParams(location.search);
  const id = query.get("oauth_request");
  if (id === null) return;
  query.delete("oauth_request");
  const rest = query.toString();
  history.replaceState(history.state, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  // A new request replaces any older one of this tab: the user started over in the app.
  // The server judges the id (a mangled one gets the "expired" answer); only absurd sizes stop here.
  const trimmed = id.trim();
  write(trimmed && trimmed.length <= 1024 ? { id: trimmed, at: Date.now() } : null);
}

takeOAuthRequest();
