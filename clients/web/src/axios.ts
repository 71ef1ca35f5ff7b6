// Plugging the client into axios-style interceptors (axios itself is not a dependency;
// these structural types match axios' interceptor API).
//
//   import axios from "axios";
//   import { GatehouseClient } from "@gatehouse/web";
//   import { attachGatehouse } from "@gatehouse/web/axios";
//   const gh = new GatehouseClient();
//   const api = axios.create({ baseURL: "/api" });
//   attachGatehouse(api, gh);   // Bearer header on every request; one refresh + one retry on a 401
//
// Refreshing is single-flight and cross-tab exactly as in GatehouseClient.fetch.

import type { GatehouseClient } from "./client";

export interface AxiosLikeRequestConfig {
  headers?: Record<string, unknown> | { set(name: string, value: string): unknown } | undefined;
  /** Set on the retried request so it is never retried twice. */
  _gatehouseRetried?: boolean;
  /** The token the request was sent with. */
  _gatehouseToken?: string | null;
  [key: string]: unknown;
}

export interface AxiosLikeError {
  config?: AxiosLikeRequestConfig;
  response?: { status: number; headers: Record<string, unknown> | { get?(name: string): unknown } };
}

export interface AxiosLike {
  interceptors: {
    request: { use(onFulfilled: (c: AxiosLikeRequestConfig) => Promise<AxiosLikeRequestConfig>): number };
    response: { use(onFulfilled: (r: unknown) => unknown, onRejected: (e: AxiosLikeError) => unknown): number };
  };
  request(config: AxiosLikeRequestConfig): Promise<unknown>;
}

function setHeader(config: AxiosLikeRequestConfig, name: string, value: string): void {
  const h = config.headers;
  if (h && typeof (h as { set?: unknown }).set === "function") {
    (h as { set(n: string, v: string): unknown }).set(name, value);
  } else {
    config.headers = { ...(h as Record<string, unknown> | undefined), [name]: value };
  }
}

/** Installs a request and a response interceptor on an axios(-like) instance. */
export function attachGatehouse(instance: AxiosLike, client: GatehouseClient): void {
  instance.interceptors.request.use(async (config) => {
    const token = await client.getAccessToken();
    config._gatehouseToken = token;
    if (token !== null) setHeader(config, "Authorization", "Bearer " + token);
    return config;
  });
  instance.interceptors.response.use(
    (r) => r,
    async (error) => {
      const config = error.config;
      const res = error.response;
      // Any 401 to a request that carried the access token gets one refresh and one retry.
      const sentToken = config?._gatehouseToken ?? null;
      if (!config || res?.status !== 401 || sentToken === null || config._gatehouseRetried) throw error;
      if (!(await client.handleUnauthorized(sentToken))) throw error;
      config._gatehouseRetried = true;
      return instance.request(config); // the request interceptor attaches the new token
    },
  );
}
