// Returns from an external identity provider. The page starts a sign-in or a link with
// redirect_to = <page>/account?idp=<name>[&link=1], so Gatehouse's callback comes back to
// /account?idp=<name>#error=<code> on a failure (#error=mfa_required&mfa_token=...&methods=...
// when the account has a second factor), #linked=<name> after a link, or without a fragment
// after a sign-in (the refresh cookie is then set). Like ./link, this runs before anything else
// of the page: it reads the query and the fragment and replaces the address with plain
// /account, so neither stays in the address bar or the history.
import { parseProviderReturn } from "../client";
import type { MfaMethod } from "../client";

export interface ProviderVisit {
  /** The provider's name, from the page's own redirect_to ("" when the query lacked it). */
  provider: string;
  /** Whether this was linking to the signed-in account rather than signing in. */
  link: boolean;
  /** The callback's error code, or null when it succeeded. */
  error: string | null;
  /** With error mfa_required: the sign-in waiting for its second factor. */
  mfa: { token: string; methods: MfaMethod[] } | null;
}

/** The page's redirect_to for `provider`: this page with the provider in the query. */
export function returnUrl(provider: string, link: boolean): string {
  const q = new URLSearchParams({ idp: provider });
  if (link) q.set("link", "1");
  return `${location.origin}${location.pathname}?${q.toString()}`;
}

function takeProviderVisit(): ProviderVisit | null {
  const query = new URLSearchParams(location.search);
  const ret = parseProviderReturn(location.hash);
  const provider = query.get("idp");
  if (provider === null && ret === null) return null;
  history.replaceState(null, "", location.pathname);
  return {
    provider: provider ?? "",
    link: query.get("link") === "1",
    // A login_code is for apps in body transport, which this page does not ask for: ignored.
    error: ret !== null && "error" in ret ? ret.error : null,
    mfa: ret !== null && "error" in ret && ret.mfaToken ? { token: ret.mfaToken, methods: ret.methods ?? [] } : null,
  };
}

export const providerVisit: ProviderVisit | null = takeProviderVisit();
