export { GatehouseClient, GatehouseError, MfaRequiredError, readCookie, supportsPasskeys } from "./client";
export type {
  ClientOptions,
  LoginEventDetail,
  LogoutEventDetail,
  LogoutReason,
  LogoutScope,
  MagicLinkProof,
  MfaMethod,
  MfaStatus,
  Passkey,
  PasskeyErrorCode,
  Session,
  TokenEventDetail,
  TotpEnrolment,
  User,
} from "./client";
export { attachGatehouse } from "./axios";
export type { AxiosLike, AxiosLikeError, AxiosLikeRequestConfig } from "./axios";
