// useSSE and useSSEEvents: the SSEClient of sse-client.js as React hooks
// (React 18 or later).
//
//   const { isConnected, events, error } = useSSE({
//     url: '/api/sse?userId=alice',
//     eventHandlers: { notification: (event) => toast(event.data.title) },
//     onReset: () => refetch(),
//   });
//
//   useSSEEvents({
//     stats: (data) => setStats(data),
//     alert: (data, event) => toast(data.text, event.id),
//   });
//
// The client is created once per URL (a function URL is read at every new
// connection instead), connects after mounting unless `autoConnect` is
// false, and is disconnected on unmount, with every timer cancelled.
// Callbacks and handlers are read from the latest render. `useSSEEvents`
// can also listen on a client of your own (`{ client }`), which it then
// neither connects nor disconnects.

import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useSyncExternalStore } from 'react';
import { SSEClient } from './sse-client.js';

const useIsomorphicLayoutEffect = typeof document === 'undefined' ? useEffect : useLayoutEffect;

const CALLBACKS = ['onOpen', 'onClose', 'onError', 'onMessage', 'onReset', 'onDropped'];

const DEFAULT_URL = '/api/sse';

function createStore(options, latest) {
  const delegated = {};
  for (const name of CALLBACKS) {
    delegated[name] = (argument) => latest.current[name]?.(argument);
  }
  const client = new SSEClient({
    ...options,
    ...delegated,
    url: typeof options.url === 'function' ? () => latest.current.url() : (options.url ?? DEFAULT_URL),
    eventHandlers: undefined,
    autoConnect: false,
  });
  return storeOf(client, true);
}

function storeOf(client, owned) {
  return {
    client,
    owned,
    subscribe: (listener) => client.subscribe(listener),
    getSnapshot: () => client.getSnapshot(),
  };
}

// The hooks' common part: `external` is a client the caller owns, or null.
function useClientHook(options, external) {
  const latest = useRef(options);
  useIsomorphicLayoutEffect(() => {
    latest.current = options;
  });
  const urlKey = external ? null : typeof options.url === 'function' ? null : String(options.url ?? DEFAULT_URL);
  // A new client for a new URL; an unused one holds no resources.
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const store = useMemo(() => (external ? storeOf(external, false) : createStore(options, latest)), [external, urlKey]);
  const { client } = store;
  const snapshot = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);

  const names = Object.keys(options.eventHandlers ?? {}).sort().join('\n');
  useEffect(() => {
    if (!names) return undefined;
    const removers = names
      .split('\n')
      .map((name) => client.on(name, (event) => latest.current.eventHandlers?.[name]?.(event)));
    return () => {
      for (const remove of removers) remove();
    };
  }, [client, names]);

  const autoConnect = options.autoConnect ?? true;
  useEffect(() => {
    if (!store.owned) return undefined;
    if (autoConnect) client.connect();
    return () => client.disconnect();
  }, [store, client, autoConnect]);

  const connect = useCallback(() => client.connect(), [client]);
  const reconnect = useCallback(() => client.reconnect(), [client]);
  const disconnect = useCallback(() => client.disconnect(), [client]);
  const clearEvents = useCallback(() => client.clearEvents(), [client]);

  return {
    state: snapshot.state,
    isConnected: snapshot.isConnected,
    isConnecting: snapshot.isConnecting,
    error: snapshot.lastError,
    lastEvent: snapshot.lastEvent,
    events: snapshot.events,
    lastEventId: snapshot.lastEventId,
    reconnectAttempts: snapshot.reconnectAttempts,
    connect,
    reconnect,
    disconnect,
    clearEvents,
    client,
  };
}

/**
 * Connects to an SSE stream for the lifetime of the component.
 * @param {import('./sse-client.js').SSEClientOptions} [options]
 */
export function useSSE(options = {}) {
  return useClientHook(options, null);
}

/**
 * Handles several named events with one connection: `handlers` maps each
 * event name to `(data, event) => void`. `options` are useSSE's, or
 * `{ client }` to listen on a client of your own.
 * @param {Record<string, (data: unknown, event: import('./sse-client.js').SSEEvent) => void>} handlers
 * @param {import('./sse-client.js').SSEClientOptions & { client?: SSEClient }} [options]
 */
export function useSSEEvents(handlers, options = {}) {
  const { client: external = null, ...rest } = options;
  const eventHandlers = {};
  for (const [name, handler] of Object.entries(handlers ?? {})) {
    if (typeof handler === 'function') eventHandlers[name] = (event) => handler(event.data, event);
  }
  return useClientHook({ ...rest, eventHandlers }, external);
}

export default useSSE;
