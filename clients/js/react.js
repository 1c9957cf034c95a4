// useSSE: the SSEClient of sse-client.js as a React hook (React 18 or later).
//
//   const { isConnected, events, error } = useSSE({
//     url: '/api/sse?userId=alice',
//     eventHandlers: { notification: (event) => toast(event.data.title) },
//     onReset: () => refetch(),
//   });
//
// The client is created once per URL (a function URL is read at every new
// connection instead), connects after mounting unless `autoConnect` is
// false, and is disconnected on unmount, with every timer cancelled.
// Callbacks and handlers are read from the latest render.

import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useSyncExternalStore } from 'react';
import { SSEClient } from './sse-client.js';

const useIsomorphicLayoutEffect = typeof document === 'undefined' ? useEffect : useLayoutEffect;

const CALLBACKS = ['onOpen', 'onClose', 'onError', 'onMessage', 'onReset'];

function createStore(options, latest) {
  const delegated = {};
  for (const name of CALLBACKS) {
    delegated[name] = (argument) => latest.current[name]?.(argument);
  }
  const client = new SSEClient({
    ...options,
    ...delegated,
    url: typeof options.url === 'function' ? () => latest.current.url() : options.url,
    eventHandlers: undefined,
    autoConnect: false,
  });
  return {
    client,
    subscribe: (listener) => client.subscribe(listener),
    getSnapshot: () => client.getSnapshot(),
  };
}

/**
 * Connects to an SSE stream for the lifetime of the component.
 * @param {import('./sse-client.js').SSEClientOptions} options
 */
export function useSSE(options) {
  const latest = useRef(options);
  useIsomorphicLayoutEffect(() => {
    latest.current = options;
  });
  const urlKey = typeof options.url === 'function' ? null : String(options.url);
  // A new client for a new URL; an unused one holds no resources.
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const store = useMemo(() => createStore(options, latest), [urlKey]);
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
    if (autoConnect) client.connect();
    return () => client.disconnect();
  }, [client, autoConnect]);

  const connect = useCallback(() => client.connect(), [client]);
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
    disconnect,
    clearEvents,
    client,
  };
}

export default useSSE;
