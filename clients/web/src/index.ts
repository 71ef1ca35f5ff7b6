export { GatehouseClient, GatehouseError, MfaRequiredError, readCookie } from "./client";
export type {
  ClientOptions,
  LoginEventDetail,
  LogoutEventDetail,
  LogoutReason,
  LogoutScope,
  MagicLinkProof,
  MfaMethod,
  MfaStatus,
  Session,
  TokenEventDetail,
  TotpEnrolment,
  User,
} from "./client";
export { attachGatehouse } from "./axios";
export type { AxiosLike, AxiosLikeError, AxiosLikeRequestConfig } from "./axios";
