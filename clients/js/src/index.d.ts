// TypeScript declarations of the cardgw client (src/index.js). See README.md.

/** A channel position (PROTOCOL.md section 6): offsets are comparable only within one epoch. */
export interface Position {
  epoch: string;
  offset: number;
}

/** What the client needs of a WebSocket (browser WebSocket, `ws`, or a WeChat adapter). */
export interface TransportSocket {
  send(data: string | Uint8Array | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev?: unknown) => void) | null;
  /** data: a string for text frames; ArrayBuffer / Uint8Array (e.g. Buffer) for binary ones. */
  onmessage: ((ev: { data: string | ArrayBuffer | Uint8Array }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev?: unknown) => void) | null;
}

/** Opens a socket to `url` offering the subprotocols (the client offers exactly one). */
export type Transport = (url: string, protocols: string[]) => TransportSocket;

export interface Codec {
  /** The subprotocol: 'cardgw.v1.json' or 'cardgw.v1.msgpack'. */
  name: string;
  binary: boolean;
  encode(msg: object): string | Uint8Array;
  decode(data: string | ArrayBuffer | Uint8Array): any;
}

export const jsonCodec: Codec;

export interface ClientOptions {
  /** One URL, a list (each reconnect tries the next one), or a function of the attempt number. */
  url: string | string[] | ((attempt: number) => string);
  /** The token for the first connect (an opaque session token or an HS256 JWT). */
  token?: string;
  /** Fetches a fresh token: for `refresh` pushes, for the first connect when `token` is absent,
   * and before reconnecting after 4005 (expired) / 4501 (bad token, once). A falsy result stops
   * the client (logged out). */
  getToken?: () => Promise<string | null | undefined>;
  /** Default: globalThis.WebSocket (binaryType 'arraybuffer'). */
  transport?: Transport;
  /** Default: jsonCodec. `import { msgpackCodec } from 'cardgw/msgpack'` for msgpack. */
  codec?: Codec;
  /** Sent as `client` in connect (name/version, for the node's logs). */
  name?: string;
  /** Backoff base, ms (default 200): the n-th consecutive retry waits uniformly in [0, min(max, min · 2^n)]. */
  minReconnectDelay?: number;
  /** Backoff cap, ms (default 20000). */
  maxReconnectDelay?: number;
  /** Connect timeout and default command timeout, ms (default 10000). */
  timeout?: number;
  /** A connection with nothing received for the advised ping interval plus this margin (ms,
   * default 5000) is dead: closed (3001) and reconnected. */
  pingMargin?: number;
}

export type ClientState = 'disconnected' | 'connecting' | 'connected';
export type SubscriptionState = 'unsubscribed' | 'subscribing' | 'subscribed';

/** Server errors carry the numeric protocol code (PROTOCOL.md section 9; `appCode` for 119);
 * client errors a string code. */
export class CardgwError extends Error {
  code: number | 'timeout' | 'disconnected' | 'closed' | 'token';
  appCode?: number;
  constructor(code: number | string, message?: string, appCode?: number);
}

/** Every event object: its fields plus `type`; `stop()` consumes it (later plugin handlers and
 * the app's listeners do not see it). */
export interface BaseEvent {
  type: string;
  stopped: boolean;
  stop(): void;
}

export interface ConnectingEvent extends BaseEvent {
  reason: string;
  attempt: number;
  delay?: number;
}
export interface ConnectedEvent extends BaseEvent {
  client: string;
  uid: string;
  node: string;
  ping: number;
  expiresIn?: number;
  url: string;
}
export interface DisconnectedEvent extends BaseEvent {
  /** The WebSocket close code (server codes 4000–4999, 1001, 1006…; client 1000/3000–3003;
   * WeChat's 1000 "interrupted"). */
  code: number;
  reason: string;
  /** false: the client stopped (state 'disconnected'); true: it reconnects after `delay` ms. */
  reconnect: boolean;
  delay?: number;
  /** true when the server API kicked the user (4504). */
  kicked?: boolean;
}
export interface DisconnectAdviceEvent extends BaseEvent {
  code: number;
  reason: string;
  reconnect: boolean;
  delayMs: number;
}
export interface RefreshEvent extends BaseEvent {
  expiresIn: number;
}
export interface ErrorEvent extends BaseEvent {
  kind?: string;
  error: Error;
  channel?: string;
  retryIn?: number;
}
export interface ChannelEvent extends BaseEvent {
  channel: string;
  subscription: Subscription;
}
export interface SubscribingEvent extends ChannelEvent {
  reason: string;
}
export interface SubscribedEvent extends ChannelEvent {
  epoch: string;
  /** The channel's top offset in the reply. */
  offset: number;
  /** Present when the subscribe carried `since`. */
  recovered?: boolean;
  resumed: boolean;
}
export interface UnsubscribedEvent extends ChannelEvent {
  /** 0: unsubscribe() called; 103: permission lost (unsub push); other server error codes. */
  code: number;
  reason: string;
}
export interface PublicationEvent extends ChannelEvent {
  offset: number;
  epoch: string;
  /** Plugins may replace it (transform). */
  data: any;
  from?: string;
  /** true when it came in a subscribe reply's recovery rather than live. */
  recovered: boolean;
}
export interface PresenceInfo {
  uid: string;
  client: string;
  conn_info?: any;
}
export interface JoinLeaveEvent extends ChannelEvent {
  info: PresenceInfo;
}
export interface GapEvent extends ChannelEvent {
  expected: number;
  got: number;
  position: Position;
}
export interface RecoveredFalseEvent extends ChannelEvent {
  /** The channel's current position: reload the snapshot. */
  epoch: string;
  offset: number;
  /** The position the client asked to resume from. */
  previous: Position;
}

export interface ClientEvents {
  connecting: ConnectingEvent;
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  disconnect_advice: DisconnectAdviceEvent;
  refresh: RefreshEvent;
  error: ErrorEvent;
  subscribing: SubscribingEvent;
  subscribed: SubscribedEvent;
  unsubscribed: UnsubscribedEvent;
  publication: PublicationEvent;
  join: JoinLeaveEvent;
  leave: JoinLeaveEvent;
  gap: GapEvent;
  recovered_false: RecoveredFalseEvent;
}

export interface SubscriptionEvents {
  subscribing: SubscribingEvent;
  subscribed: SubscribedEvent;
  unsubscribed: UnsubscribedEvent;
  publication: PublicationEvent;
  join: JoinLeaveEvent;
  leave: JoinLeaveEvent;
  gap: GapEvent;
  recovered_false: RecoveredFalseEvent;
  error: ErrorEvent;
}

export type Handler<E> = (ev: E, client: Client) => void | boolean;

/** A plugin: handlers named after events (others of its methods are its own API). */
export type Plugin = { [K in keyof ClientEvents]?: Handler<ClientEvents[K]> } & {
  name?: string;
  /** Used when use() gets no priority. */
  priority?: number;
  install?(client: Client): void;
  [own: string]: any;
};

export const EVENTS: Array<keyof ClientEvents>;
export const DEFAULT_PRIORITY: number;
export const DISCONNECTED: 'disconnected';
export const CONNECTING: 'connecting';
export const CONNECTED: 'connected';
export const UNSUBSCRIBED: 'unsubscribed';
export const SUBSCRIBING: 'subscribing';
export const SUBSCRIBED: 'subscribed';
export const CLOSE_CONNECT_TIMEOUT: 3000;
export const CLOSE_DEAD: 3001;
export const CLOSE_BAD_FRAME: 3002;
export const CLOSE_SUSPENDED: 3003;

export interface ClosePolicy {
  reconnect: boolean;
  delay?: number | 'jitter';
  floor?: number;
  newToken?: boolean;
  badToken?: boolean;
}
export function closePolicy(code: number, advice?: { reconnect: boolean; delay: number } | null): ClosePolicy;

export interface CallOptions {
  /** ms; default: the client's `timeout`. */
  timeout?: number;
}
export interface Publication {
  offset: number;
  data: any;
  from?: string;
}
export interface HistoryResult {
  epoch: string;
  offset: number;
  publications?: Publication[];
  /** true: cut by the node's byte bound (recovery_max_bytes); ask again from the last offset */
  more?: boolean;
}
export interface PresenceResult {
  clients: PresenceInfo[];
  /** true: at most presence_max_members of `total` connections are listed */
  partial?: boolean;
  total?: number;
}
export interface PresenceUsersResult {
  users: Array<{ uid: string; connections: number; conn_info?: any }>;
  partial?: boolean;
  total?: number;
}
export interface PresenceStatsResult {
  connections: number;
  users: number;
  /** true: `users` was counted among the first presence_max_members connections only */
  partial?: boolean;
}

export class Subscription {
  readonly client: Client;
  readonly channel: string;
  readonly state: SubscriptionState;
  /** The last applied position, or null before the first subscribe reply. */
  readonly position: Position | null;
  subscribe(opts?: { since?: Position }): this;
  unsubscribe(): this;
  on<K extends keyof SubscriptionEvents>(event: K, fn: (ev: SubscriptionEvents[K]) => void): () => void;
  once<K extends keyof SubscriptionEvents>(event: K, fn: (ev: SubscriptionEvents[K]) => void): () => void;
  off<K extends keyof SubscriptionEvents>(event: K, fn: (ev: SubscriptionEvents[K]) => void): void;
  publish(data: any, opts?: CallOptions): Promise<Position>;
  presence(opts?: CallOptions): Promise<PresenceResult>;
  presenceUsers(opts?: CallOptions): Promise<PresenceUsersResult>;
  presenceStats(opts?: CallOptions): Promise<PresenceStatsResult>;
  history(opts?: { limit?: number; since?: Position } & CallOptions): Promise<HistoryResult>;
}

export class Client {
  constructor(options: ClientOptions);
  readonly options: ClientOptions;
  readonly state: ClientState;
  /** The current connection's connect result, null while not connected. */
  readonly info: { client: string; uid: string; node: string; ping: number; expires_in?: number } | null;
  readonly stats: {
    commands: number;
    connects: number;
    disconnects: number;
    duplicates: number;
    gaps: number;
    recoveredFalse: number;
    refreshes: number;
  };
  connect(): this;
  /** Closes and stops reconnecting; subscriptions are kept and resume with since on connect(). */
  disconnect(): this;
  /** The network went away / the app went to the background: closes the connection now (3003)
   * and holds reconnecting until resume() (at most maxReconnectDelay). No effect when stopped. */
  suspend(reason?: string): this;
  /** The network / the app is back: reconnects at once (skipping a pending backoff wait); a
   * connected client checks its connection with a ping (dead without an answer within
   * pingMargin). No effect when stopped. */
  resume(reason?: string): this;
  on<K extends keyof ClientEvents>(event: K, fn: (ev: ClientEvents[K]) => void): () => void;
  once<K extends keyof ClientEvents>(event: K, fn: (ev: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(event: K, fn: (ev: ClientEvents[K]) => void): void;
  /** Registers a plugin; handlers run in ascending priority (default 100), before the app's
   * listeners. Returns a function that removes it. */
  use(plugin: Plugin, opts?: { priority?: number }): () => void;
  subscribe(channel: string, opts?: { since?: Position }): Subscription;
  unsubscribe(channel: string): Subscription | null;
  subscription(channel: string): Subscription;
  getSubscription(channel: string): Subscription | null;
  subscriptions(): Subscription[];
  publish(channel: string, data: any, opts?: CallOptions): Promise<Position>;
  presence(channel: string, opts?: CallOptions): Promise<PresenceResult>;
  presenceUsers(channel: string, opts?: CallOptions): Promise<PresenceUsersResult>;
  presenceStats(channel: string, opts?: CallOptions): Promise<PresenceStatsResult>;
  history(channel: string, opts?: { limit?: number; since?: Position } & CallOptions): Promise<HistoryResult>;
  /** Resolves with the backend's result; rejects with CardgwError 118 (no answer in time), 119
   * (refused; appCode), 114, 115, 111, or 'timeout' (client-side). */
  rpc<T = any>(method: string, data?: any, opts?: CallOptions): Promise<T>;
  /** App-level ping; resolves with the round trip in ms. */
  ping(opts?: CallOptions): Promise<number>;
}
