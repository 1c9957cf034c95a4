// Type declarations for react.js.

import type {
  AnySSEEvent,
  EventMap,
  KnownEvents,
  SSEClient,
  SSEClientOptions,
  SSEError,
  SSEEvent,
  SSEState,
} from './sse-client.js';

/** What {@link useSSE} returns. */
export interface UseSSEResult<Events extends EventMap = EventMap> {
  /** 'connecting' | 'connected' | 'closed' */
  state: SSEState;
  isConnected: boolean;
  isConnecting: boolean;
  /** The last failure since the last successful open, or `null`. */
  error: SSEError | null;
  /** The last event received, or `null`. */
  lastEvent: AnySSEEvent<KnownEvents<Events>> | null;
  /** The last `maxEvents` events, oldest first. */
  events: ReadonlyArray<AnySSEEvent<KnownEvents<Events>>>;
  /** The id of the last event that carried one (`''` if none yet). */
  lastEventId: string;
  /** Failed connection attempts since the last successful open. */
  reconnectAttempts: number;
  /** Opens the stream (after `disconnect()`, or with `autoConnect: false`). */
  connect: () => void;
  /** Opens a new connection now. */
  reconnect: () => void;
  /** Closes the stream and cancels any pending reconnection. */
  disconnect: () => void;
  /** Empties `events`. */
  clearEvents: () => void;
  /** The underlying client. */
  client: SSEClient<Events>;
}

/**
 * Connects to an SSE stream for the lifetime of the component: one client
 * per URL, connected after mounting unless `autoConnect` is false,
 * disconnected on unmount. Callbacks and handlers are read from the latest
 * render.
 */
export function useSSE<Events extends EventMap = EventMap>(options?: SSEClientOptions<Events>): UseSSEResult<Events>;

/** A handler per event name, given the event's data (typed by the event map) and the whole event. */
export type SSEDataHandlers<Events extends EventMap = EventMap> = {
  [K in keyof KnownEvents<Events> & string]?: (data: KnownEvents<Events>[K], event: SSEEvent<KnownEvents<Events>[K], K>) => void;
};

/** The options of {@link useSSEEvents}: useSSE's, or a client of your own. */
export type UseSSEEventsOptions<Events extends EventMap = EventMap> = Omit<SSEClientOptions<Events>, 'eventHandlers'> & {
  /** Listen on this client instead of creating one; the hook neither connects nor disconnects it. */
  client?: SSEClient<Events>;
};

/**
 * Handles several named events with one connection (one subscription):
 * `useSSEEvents<AppEvents>({ stats: (data) => ..., alert: (data, event) => ... })`.
 * Handlers are read from the latest render.
 */
export function useSSEEvents<Events extends EventMap = EventMap>(
  handlers: SSEDataHandlers<Events>,
  options?: UseSSEEventsOptions<Events>,
): UseSSEResult<Events>;

export default useSSE;
