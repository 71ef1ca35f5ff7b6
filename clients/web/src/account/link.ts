// Mail links: <public-url>/account/<action>#token=<token>. This module is the first code
// of the page to run (app.js is a classic script at the top of <head>, and this is its
// first import): it takes the token out of the fragment and replaces the address with
// plain /account before the stylesheet, the icon or any request of the page, so the token
// is in neither the address bar nor the history. The token is then kept in memory only.

export type LinkAction = "verify-email" | "reset-password" | "magic-link" | "change-email";

export interface MailLink {
  action: LinkAction;
  /** The token from the fragment; "" when the link arrived without one (a truncated copy). */
  token: string;
}

const LINK_PATH = /\/account\/(verify-email|reset-password|magic-link|change-email)\/?$/;

function takeMailLink(): MailLink | null {
  const m = LINK_PATH.exec(location.pathname);
  if (!m) return null;
  let token = "";
  try {
    token = new URLSearchParams(location.hash.replace(/^#/, "")).get("token") ?? "";
  } catch {
    token = "";
  }
  history.replaceState(null, "", location.pathname.slice(0, m.index) + "/account");
  return { action: m[1] as LinkAction, token: token.trim() };
}

export const mailLink: MailLink | null = takeMailLink();
