// Type declarations for sse-client.js.

/**
 * A map from event name to the type of its (parsed) data, e.g.
 * `interface AppEvents { notification: { title: string }; progress: { percent: number } }`.
 * Names it does not list can still be handled, with `unknown` data.
 */
export type EventMap = object;

/** The events every server of the HTTP contract may send. */
export interface BuiltInEvents {
  /** Unnamed events. */
  message: unknown;
  /** The first event of every connection. */
  connected: { clientId: string; userId?: string | null; sessionId?: string | null; channels?: string[] };
  /** The last event id was unknown to the server: refetch the application's state. */
  reset: { reason?: string };
  /** The server refused the connection for load; the client retries later. */
  overloaded: { retryMs?: number };
  /**
   * The connection lagged and the server dropped that many of its queued
   * normal-priority events to make room for a high-priority one.
   */
  dropped: { dropped: number };
}

/** The connection state. */
export type SSEState = 'connecting' | 'connected' | 'closed';

/** One received event. */
export interface SSEEvent<T = unknown, K extends string = string> {
  /** The event name (`message` for unnamed events). */
  readonly type: K;
  /** The event name again, as the servers' publish API calls it. */
  readonly event: K;
  /** The last event id when the event arrived (`''` if none yet): its own, or the one before it. */
  readonly id: string;
  /** The id this event itself carried from the server (`''` when it carried none). */
  readonly serverId: string;
  /** The data, parsed by the `parse` option (JSON when it is JSON, the text otherwise). */
  readonly data: T;
  /** The data as the server sent it. */
  readonly raw: string;
  /** When the event arrived (milliseconds since the epoch, from the clock). */
  readonly receivedAt: number;
}

/** Any event of an event map, as a discriminated union on `type`. */
export type AnySSEEvent<Events extends EventMap> = {
  [K in keyof Events & string]: SSEEvent<Events[K], K>;
}[keyof Events & string];

/** The events a client with event map `Events` knows of. */
export type KnownEvents<Events extends EventMap> = Omit<BuiltInEvents, keyof Events> & Events;

/** The data type of event `K`: from `Events`, else from {@link BuiltInEvents}, else `unknown`. */
export type EventData<Events extends EventMap, K extends string> = K extends keyof Events
  ? Events[K]
  : K extends keyof BuiltInEvents
    ? BuiltInEvents[K]
    : unknown;

/** What a failure was. */
export type SSEErrorKind =
  /** The connection failed or was lost; the browser retries by itself. */
  | 'connection'
  /** The EventSource closed (a status other than 200, or the browser gave up); the client retries. */
  | 'closed'
  /**
   * With a `url` function: refused before it opened (a status other than 200,
   * e.g. the 401 of an expired token); the client retries at once with a
   * fresh URL, without counting an attempt (once until the next open).
   */
  | 'refused'
  /** The `url` function threw or its promise rejected; the client retries. */
  | 'url'
  /** The server refused the connection for load; the client retries after its hint. */
  | 'overloaded'
  /** `maxReconnectAttempts` attempts failed: the client stopped. */
  | 'gave-up'
  /** The EventSource could not be created (bad URL, no EventSource). */
  | 'invalid';

/** A connection failure. */
export class SSEError extends Error {
  constructor(message: string, details: { kind: SSEErrorKind; attempt: number; event?: Event; cause?: unknown });
  readonly name: 'SSEError';
  readonly kind: SSEErrorKind;
  /** The reconnection attempt this failure led to (for `gave-up`: the attempts made). */
  readonly attempt: number;
  /** The EventSource event behind the failure, if any. */
  readonly event?: Event;
}

/** Why the client closed. */
export interface CloseInfo {
  /** `disconnect`: `disconnect()` was called; `max-attempts`: it gave up; `error`: the EventSource could not be created. */
  reason: 'disconnect' | 'max-attempts' | 'error';
  /** The `gave-up` error, for `max-attempts`. */
  error?: SSEError;
}

/** The timer functions and clock the client uses (injectable for tests). */
export interface SSEClock {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  now(): number;
}

/** The EventSource constructor the client uses. */
export interface EventSourceConstructor {
  new (url: string, init?: { withCredentials?: boolean }): EventSource;
}

/** A request to join or leave a channel for the current connection. */
export interface ChannelRequest {
  action: 'subscribe' | 'unsubscribe';
  /** The server's id of the connection (its `connected` event's `clientId`). */
  clientId: string;
  channel: string;
  /** The URL of the current EventSource. */
  url: string;
  withCredentials: boolean;
}

/** The parts of the Web Locks API the client uses. */
export interface LockManagerLike {
  request(name: string, options: { signal?: AbortSignal }, callback: (lock: unknown) => Promise<unknown> | unknown): Promise<unknown>;
}

/** The BroadcastChannel constructor the client uses. */
export interface BroadcastChannelConstructor {
  new (name: string): {
    onmessage: ((event: { data: unknown }) => void) | null;
    postMessage(message: unknown): void;
    close(): void;
  };
}

/** Handlers by event name. */
export type EventHandlers<Events extends EventMap> = {
  [K in keyof KnownEvents<Events> & string]?: (event: SSEEvent<KnownEvents<Events>[K], K>) => void;
};

/** The options of {@link SSEClient}. */
export interface SSEClientOptions<Events extends EventMap = EventMap> {
  /**
   * The stream URL (default `/api/sse`), or a function returning it or a
   * promise of it, called for every new EventSource (e.g. with a fresh
   * token). With a function, the client reconnects itself at every error
   * instead of letting the browser retry with the old URL.
   */
  url?: string | (() => string | Promise<string>);
  /**
   * One connection for every tab of this origin with the same stream (a
   * string names the stream; `true`: its URL): one tab holds it, elected
   * with the Web Locks API, and passes its events on through a
   * BroadcastChannel. Without either API each tab connects on its own.
   */
  shareAcrossTabs?: boolean | string;
  /** Joins or leaves a channel for `joinChannel` and `leaveChannel` (default: `POST {stream}/subscribe` or `/unsubscribe`). */
  channelRequest?: (request: ChannelRequest) => Promise<unknown> | unknown;
  /** Connect at once (default `true`). */
  autoConnect?: boolean;
  /** The base delay of the client's own reconnection backoff, in ms (default 5000). */
  reconnectInterval?: number;
  /** The cap of the backoff delay, in ms (default 30000). */
  maxReconnectInterval?: number;
  /** Failed attempts after which the client gives up (default 5; `0` or `Infinity`: never). */
  maxReconnectAttempts?: number;
  /** Send cookies cross-origin (EventSource's `withCredentials`). */
  withCredentials?: boolean;
  /** Resume from this event id on the first connection. */
  lastEventId?: string;
  /** Handlers by event name; each name is listened to. */
  eventHandlers?: EventHandlers<Events>;
  /** More event names to listen to (recorded in `events`) without a handler. */
  eventTypes?: readonly string[];
  /** How many events `events` keeps (default 100; 0 keeps none). */
  maxEvents?: number;
  /** Turns an event's text into its `data` (default: JSON when it is JSON, the text otherwise). */
  parse?: (raw: string, type: string) => unknown;
  /** The connection opened (also after each reconnection). */
  onOpen?: (event: Event) => void;
  /** The client closed: `disconnect()`, giving up, or an unusable URL. */
  onClose?: (info: CloseInfo) => void;
  /** A connection failure. */
  onError?: (error: SSEError) => void;
  /** Every event received, whatever its name, after its handlers. */
  onMessage?: (event: AnySSEEvent<KnownEvents<Events>>) => void;
  /** The server did not know the last event id: refetch the application's state. */
  onReset?: (event: SSEEvent<EventData<Events, 'reset'>, 'reset'>) => void;
  /**
   * The connection lagged, and the server dropped `data.dropped` queued
   * normal-priority events to make room for a high-priority one (the
   * events after it arrive as usual): refetch what they would have updated.
   */
  onDropped?: (event: SSEEvent<EventData<Events, 'dropped'>, 'dropped'>) => void;
  /** The EventSource implementation (default: the global one). */
  EventSource?: EventSourceConstructor;
  /** The BroadcastChannel implementation for `shareAcrossTabs` (default: the global one). */
  BroadcastChannel?: BroadcastChannelConstructor;
  /** The lock manager for `shareAcrossTabs` (default: `navigator.locks`). */
  locks?: LockManagerLike;
  /** Timers and clock (default: the global ones). */
  clock?: Partial<SSEClock>;
  /** Random numbers in [0, 1) for the backoff jitter (default `Math.random`). */
  random?: () => number;
}

/** The client's state as one immutable object, replaced at every change. */
export interface SSESnapshot<Events extends EventMap = EventMap> {
  readonly state: SSEState;
  readonly isConnected: boolean;
  readonly isConnecting: boolean;
  readonly lastError: SSEError | null;
  readonly lastEvent: AnySSEEvent<KnownEvents<Events>> | null;
  readonly events: ReadonlyArray<AnySSEEvent<KnownEvents<Events>>>;
  readonly lastEventId: string;
  readonly reconnectAttempts: number;
  /** The server's id of the current connection, or `''`. */
  readonly clientId: string;
  /** The channels the current connection is in, sorted. */
  readonly channels: readonly string[];
  /** Whether this tab has a connection of its own, holds the shared one, or follows it. */
  readonly tabRole: TabRole;
}

/** `solo`: a connection of its own; `holder`: holds the one the tabs share; `follower`: receives the holder's events. */
export type TabRole = 'solo' | 'holder' | 'follower';

/** A reconnecting EventSource with the state a user interface needs. */
export class SSEClient<Events extends EventMap = EventMap> {
  constructor(options?: SSEClientOptions<Events> | string);
  /** The stream URL, or a function returning it (read at every new EventSource). */
  url: string | (() => string | Promise<string>);
  readonly state: SSEState;
  readonly isConnected: boolean;
  /** The last failure since the last successful open, or `null`. */
  readonly lastError: SSEError | null;
  /** The last event received, or `null`. */
  readonly lastEvent: AnySSEEvent<KnownEvents<Events>> | null;
  /** The last `maxEvents` events, oldest first (a new array at every change). */
  readonly events: ReadonlyArray<AnySSEEvent<KnownEvents<Events>>>;
  /** The id of the last event that carried one (`''` if none yet). */
  readonly lastEventId: string;
  /** Failed connection attempts since the last successful open. */
  readonly reconnectAttempts: number;
  /** The current EventSource, or `null` while closed, waiting to retry, or following another tab. */
  readonly eventSource: EventSource | null;
  /** The server's id of the current connection, or `''`. */
  readonly clientId: string;
  /** The channels the current connection is in, as the server confirmed them, sorted. */
  readonly channels: readonly string[];
  /** Whether this tab has a connection of its own, holds the shared one, or follows it. */
  readonly tabRole: TabRole;
  /** The state as one immutable object, replaced at every change. */
  getSnapshot(): SSESnapshot<Events>;
  /** Calls `listener` after every change; returns the function that unsubscribes it. */
  subscribe(listener: (snapshot: SSESnapshot<Events>, client: SSEClient<Events>) => void): () => void;
  /** Calls `handler` for every event named `type`; returns the function that removes it. */
  on<K extends keyof KnownEvents<Events> & string>(
    type: K,
    handler: (event: SSEEvent<KnownEvents<Events>[K], K>) => void,
  ): () => void;
  on(type: string, handler: (event: SSEEvent<unknown>) => void): () => void;
  /** Opens the stream (resuming from the last event id after `disconnect()`). */
  connect(): void;
  /** Opens a new connection now (in a following tab: asks the holder to). */
  reconnect(): void;
  /** Closes the stream and cancels any pending reconnection (a sharing tab leaves the group). */
  disconnect(): void;
  /** Empties `events`. */
  clearEvents(): void;
  /** Joins a channel for this and every later connection; resolves once the connection is in it. */
  joinChannel(channel: string): Promise<void>;
  /** Leaves a channel joined with `joinChannel`. */
  leaveChannel(channel: string): void;
}

export default SSEClient;

/** JSON when it is JSON, the text otherwise. */
export function parseData(raw: string): unknown;

/** `url` with `lastEventId` set and a `channel` parameter for each channel it does not name yet. */
export function withStreamParams(url: string, extra?: { lastEventId?: string; channels?: Iterable<string> }): string;

/** The default `channelRequest`: `POST {stream path}/subscribe` (or `/unsubscribe`) with `{clientId, channel}`. */
export function postChannelRequest(request: ChannelRequest): Promise<void>;

/** `url` with its `lastEventId` query parameter set to `id`. */
export function withLastEventId(url: string, id: string): string;

/** The delay before reconnection attempt `attempt` (1 for the first): random in [0, min(max, base * 2^(attempt-1))). */
export function backoffDelay(attempt: number, base: number, max: number, random?: () => number): number;
