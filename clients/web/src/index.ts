export {
  GatehouseClient,
  GatehouseError,
  MfaRequiredError,
  parseProviderReturn,
  readCookie,
  supportsPasskeys,
  takeProviderReturn,
} from "./client";
export type {
  ClientOptions,
  Identity,
  IdentityProvider,
  LoginWithOptions,
  LoginEventDetail,
  LogoutEventDetail,
  LogoutReason,
  LogoutScope,
  MagicLinkProof,
  MfaMethod,
  MfaStatus,
  Passkey,
  PasskeyErrorCode,
  ProviderReturn,
  Session,
  TokenEventDetail,
  TokenSet,
  TokenTransport,
  TotpEnrolment,
  User,
} from "./client";
export { attachGatehouse } from "./axios";
export type { AxiosLike, AxiosLikeError, AxiosLikeRequestConfig } from "./axios";
