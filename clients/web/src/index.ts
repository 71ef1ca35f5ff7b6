export { GatehouseClient, GatehouseError, readCookie } from "./client";
export type {
  ClientOptions,
  LoginEventDetail,
  LogoutEventDetail,
  LogoutReason,
  LogoutScope,
  MagicLinkProof,
  Session,
  TokenEventDetail,
  User,
} from "./client";
export { attachGatehouse } from "./axios";
export type { AxiosLike, AxiosLikeError, AxiosLikeRequestConfig } from "./axios";
