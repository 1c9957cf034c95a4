// Type declarations for react.js.

import type {
  AnySSEEvent,
  EventMap,
  KnownEvents,
  SSEClient,
  SSEClientOptions,
  SSEError,
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
export function useSSE<Events extends EventMap = EventMap>(options: SSEClientOptions<Events>): UseSSEResult<Events>;

export default useSSE;
