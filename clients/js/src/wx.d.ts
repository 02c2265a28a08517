// TypeScript declarations of cardgw/wx (src/wx.js): the WeChat mini-program transport and
// lifecycle. See README.md, "WeChat mini-programs".
import type { Client, Transport } from './index';

/** The part of a WeChat SocketTask the transport uses. */
export interface WxSocketTask {
  send(o: { data: string | ArrayBuffer; success?: () => void; fail?: (err: any) => void }): void;
  close(o: { code?: number; reason?: string; success?: () => void; fail?: (err: any) => void }): void;
  onOpen(fn: (res?: any) => void): void;
  onMessage(fn: (res: { data: string | ArrayBuffer }) => void): void;
  onClose(fn: (res: { code?: number; reason?: string }) => void): void;
  onError(fn: (res?: { errMsg?: string }) => void): void;
}

/** The part of the mini-program's `wx` object cardgw/wx uses. */
export interface WxApi {
  connectSocket(o: {
    url: string;
    protocols?: string[];
    header?: Record<string, string>;
    timeout?: number;
    tcpNoDelay?: boolean;
    perMessageDeflate?: boolean;
    success?: () => void;
    fail?: (err: any) => void;
    [other: string]: any;
  }): WxSocketTask;
  onAppHide(fn: (res?: any) => void): void;
  onAppShow(fn: (res?: any) => void): void;
  offAppHide?(fn: (res?: any) => void): void;
  offAppShow?(fn: (res?: any) => void): void;
  onNetworkStatusChange?(fn: (res: { isConnected: boolean; networkType?: string }) => void): void;
  offNetworkStatusChange?(fn: (res: { isConnected: boolean; networkType?: string }) => void): void;
}

/** Passed on to wx.connectSocket (url and protocols come from the client). */
export interface WxTransportOptions {
  header?: Record<string, string>;
  /** ms */
  timeout?: number;
  tcpNoDelay?: boolean;
  perMessageDeflate?: boolean;
  [other: string]: any;
}

/** A transport for `new Client({transport})` over wx.connectSocket: send → SocketTask.send
 * ({data}) (a string, or an ArrayBuffer for msgpack), close → SocketTask.close({code, reason})
 * (deferred to onOpen when the socket is still connecting), onOpen/onMessage/onClose/onError →
 * onopen/onmessage/onclose/onerror. The socket object also exposes `task`. */
export function wxTransport(wx: WxApi, options?: WxTransportOptions): Transport;

export interface WxLifecycleOptions {
  /** Default true: a connection lost while the app is hidden (WeChat's 1000 "interrupted") is
   * not retried in the background; the client holds until onAppShow. */
  pauseWhenHidden?: boolean;
}

/** onAppHide → (hold reconnects while hidden), onAppShow → client.resume(),
 * onNetworkStatusChange → client.suspend() / client.resume(). Returns a function that detaches. */
export function attachWxLifecycle(client: Client, wx: WxApi, options?: WxLifecycleOptions): () => void;
