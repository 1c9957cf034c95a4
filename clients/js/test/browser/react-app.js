// A small React application on useSSE, bundled with esbuild by the browser
// test: the connection state, the live events, and a button that unmounts
// and mounts the component again.

import { StrictMode, createElement as h, useState } from 'react';
import { createRoot } from 'react-dom/client';

import { useSSE } from '../../react.js';

function Feed({ userId }) {
  const { isConnected, isConnecting, error, lastEvent, events, connect, disconnect, clearEvents } = useSSE({
    url: `/api/sse?userId=${encodeURIComponent(userId)}`,
    eventTypes: ['notification'],
    reconnectInterval: 200,
    maxReconnectAttempts: 0,
    onReset: () => {
      window.resets = (window.resets ?? 0) + 1;
    },
  });
  const status = isConnected ? 'connected' : isConnecting ? 'connecting' : 'closed';
  return h(
    'section',
    null,
    h('p', null, 'status: ', h('span', { id: 'status' }, status)),
    h('p', null, 'error: ', h('span', { id: 'error' }, error ? error.kind : '')),
    h('p', null, 'last: ', h('span', { id: 'last' }, lastEvent ? lastEvent.raw : '')),
    h('button', { id: 'connect', onClick: connect }, 'Connect'),
    h('button', { id: 'disconnect', onClick: disconnect }, 'Disconnect'),
    h('button', { id: 'clear', onClick: clearEvents }, 'Clear'),
    h(
      'ol',
      { id: 'events' },
      events.map((event, i) =>
        h('li', { key: `${event.receivedAt}-${i}`, 'data-type': event.type, 'data-id': event.id }, event.raw),
      ),
    ),
  );
}

function App() {
  const userId = new URLSearchParams(location.search).get('userId') || 'carol';
  const [mounted, setMounted] = useState(true);
  return h(
    'main',
    null,
    h('button', { id: 'toggle', onClick: () => setMounted((m) => !m) }, mounted ? 'Unmount' : 'Mount'),
    mounted ? h(Feed, { userId }) : h('p', { id: 'unmounted' }, 'unmounted'),
  );
}

createRoot(document.getElementById('root')).render(h(StrictMode, null, h(App)));
