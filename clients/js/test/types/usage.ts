// Compiles only if the declarations describe the API as documented.

import { SSEClient, SSEError, backoffDelay, withLastEventId, withStreamParams, type SSEEvent, type SSESnapshot } from '../../sse-client.js';
import { useSSE, useSSEEvents, type UseSSEResult } from '../../react.js';

interface AppEvents {
  notification: { title: string; unread: number };
  progress: { percent: number };
}

const client = new SSEClient<AppEvents>({
  url: () => '/api/sse?userId=alice',
  reconnectInterval: 200,
  maxReconnectInterval: 5_000,
  maxReconnectAttempts: Infinity,
  withCredentials: true,
  maxEvents: 50,
  eventHandlers: {
    notification: (event) => {
      const title: string = event.data.title;
      const unread: number = event.data.unread;
      const type: 'notification' = event.type;
      void [title, unread, type];
    },
    connected: (event) => {
      const id: string = event.data.clientId;
      void id;
    },
  },
  onOpen: (event: Event) => void event,
  onClose: (info) => {
    const reason: 'disconnect' | 'max-attempts' | 'error' = info.reason;
    void reason;
  },
  onError: (error) => {
    const kind: string = error.kind;
    const attempt: number = error.attempt;
    void [kind, attempt];
  },
  onMessage: (event) => {
    if (event.type === 'progress') {
      const percent: number = (event.data as AppEvents['progress']).percent;
      void percent;
    }
  },
  onReset: (event) => void event.receivedAt,
});

const off: () => void = client.on('progress', (event) => {
  const percent: number = event.data.percent;
  void percent;
});
off();
client.on('anything', (event: SSEEvent) => void event.raw);

const snapshot: SSESnapshot<AppEvents> = client.getSnapshot();
const state: 'connecting' | 'connected' | 'closed' = snapshot.state;
const unsubscribe = client.subscribe((next, which) => void [next.events.length, which.state]);
unsubscribe();
client.connect();
client.disconnect();
client.clearEvents();
const error: SSEError | null = client.lastError;
const id: string = client.lastEventId;
const source: EventSource | null = client.eventSource;
const simple = new SSEClient('/api/sse');
void [state, error, id, source, simple, backoffDelay(1, 100, 1000), withLastEventId('/s', '1')];

// The url defaults to /api/sse.
new SSEClient({ reconnectInterval: 1 });
// @ts-expect-error a handler of a known event gets its typed data
new SSEClient<AppEvents>({ url: '/s', eventHandlers: { progress: (event: SSEEvent<string>) => void event } });

function Component(): UseSSEResult<AppEvents> {
  const sse = useSSE<AppEvents>({ url: '/api/sse', eventHandlers: { notification: (e) => void e.data.title } });
  const connected: boolean = sse.isConnected;
  const connecting: boolean = sse.isConnecting;
  const failure: SSEError | null = sse.error;
  const last = sse.lastEvent;
  const count: number = sse.events.length;
  sse.connect();
  sse.disconnect();
  sse.clearEvents();
  void [connected, connecting, failure, last, count];
  return sse;
}
void Component;

// ---- url default, async url, reconnect, channels, tabs, records -----------

const defaults = new SSEClient();
defaults.reconnect();
const joined: Promise<void> = defaults.joinChannel('news');
defaults.leaveChannel('news');
const role: 'solo' | 'holder' | 'follower' = defaults.tabRole;
const channelList: readonly string[] = defaults.channels;
const connectionId: string = defaults.clientId;
void [joined, role, channelList, connectionId, withStreamParams('/s', { lastEventId: '1', channels: ['a'] })];

const refreshing = new SSEClient<AppEvents>({
  url: async () => `/api/sse?access_token=${await Promise.resolve('t')}`,
  shareAcrossTabs: true,
  channelRequest: async ({ action, clientId, channel }) => void [action, clientId, channel],
  onMessage: (event) => {
    const name: string = event.event;
    const own: string = event.serverId;
    const at: number = event.receivedAt;
    void [name, own, at];
  },
  onError: (error) => {
    if (error.kind === 'refused' || error.kind === 'url') void error.attempt;
  },
});
void refreshing;
new SSEClient({ shareAcrossTabs: 'dashboard' });
// @ts-expect-error the url is a string or a function
new SSEClient({ url: 42 });

interface Dashboard {
  stats: { connections: number };
  alert: { text: string };
}

function Events(): UseSSEResult<Dashboard> {
  const sse = useSSEEvents<Dashboard>({
    stats: (data) => {
      const n: number = data.connections;
      void n;
    },
    alert: (data, event) => {
      const text: string = data.text;
      const name: 'alert' = event.event;
      void [text, name];
    },
  }, { url: '/api/sse?channel=ops' });
  sse.reconnect();
  // @ts-expect-error the data of stats is typed
  useSSEEvents<Dashboard>({ stats: (data: string) => void data });
  useSSEEvents<Dashboard>({ alert: (data) => void data.text }, { client: new SSEClient<Dashboard>() });
  return sse;
}
void [Events, useSSE()];
