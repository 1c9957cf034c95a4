// SSEClient: a reconnecting Server-Sent Events client for browsers.
//
// An ES module with no dependencies, usable as it is:
//
//   import { SSEClient } from '/api/sse/client.js';
//   const client = new SSEClient({
//     url: '/api/sse?userId=alice',
//     eventHandlers: { notification: (event) => console.log(event.data) },
//     onReset: () => refetchState(),
//   });
//
// Reconnection has two layers. While the EventSource is CONNECTING, the
// browser retries by itself (after the server's `retry:` hint) and sends the
// Last-Event-ID header, so the server replays what was missed. When the
// EventSource is CLOSED (the server answered with a status other than 200, or
// the browser gave up), this client opens a new EventSource after an
// exponential backoff with full jitter, passing the last event id as the
// `lastEventId` query parameter. Every failed attempt after the last
// successful open counts against `maxReconnectAttempts`, whichever layer made
// it. When `url` is a function, or channels were joined at runtime, the
// client never lets the browser retry: it closes the EventSource on every
// error and opens a new one with a freshly computed URL (a fresh token; the
// joined channels as `channel` parameters). With `shareAcrossTabs`, one tab
// holds the connection (elected with the Web Locks API) and passes its events
// to the others through a BroadcastChannel. The same file is served by every
// server adapter at `/api/sse/client.js`.

const CONNECTING = 0;
const CLOSED = 2;

/** Event names listened to whatever the options: the server's own events. */
const BUILT_IN_TYPES = ['message', 'connected', 'reset', 'overloaded', 'dropped'];

const DEFAULTS = {
  url: '/api/sse',
  autoConnect: true,
  reconnectInterval: 5000,
  maxReconnectInterval: 30000,
  maxReconnectAttempts: 5,
  withCredentials: false,
  maxEvents: 100,
};

/** How many event ids a tab sharing a connection remembers to drop duplicates. */
const REMEMBERED_IDS = 1000;

/** A connection failure, as `lastError` and `onError` report it. */
export class SSEError extends Error {
  /**
   * @param {string} message
   * @param {{ kind: string, attempt: number, event?: Event, cause?: unknown }} details
   */
  constructor(message, details) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'SSEError';
    /** 'connection' | 'closed' | 'refused' | 'url' | 'overloaded' | 'gave-up' | 'invalid' */
    this.kind = details.kind;
    /** The reconnection attempt this failure led to (0: none). */
    this.attempt = details.attempt;
    /** The EventSource event behind the failure, if any. */
    this.event = details.event;
  }
}

/**
 * Parses event data: JSON when it is JSON, the text itself otherwise.
 * @param {string} raw
 */
export function parseData(raw) {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function splitUrl(url) {
  const hashAt = url.indexOf('#');
  const hash = hashAt >= 0 ? url.slice(hashAt) : '';
  const rest = hashAt >= 0 ? url.slice(0, hashAt) : url;
  const queryAt = rest.indexOf('?');
  const path = queryAt >= 0 ? rest.slice(0, queryAt) : rest;
  const params = new URLSearchParams(queryAt >= 0 ? rest.slice(queryAt + 1) : '');
  return { path, params, hash };
}

/**
 * `url` with `lastEventId` set (when not empty) and a `channel` parameter
 * appended for each of `channels` it does not name yet; the rest of the URL
 * (path, other parameters, fragment) is kept, and so is `url` itself when
 * there is nothing to add.
 * @param {string} url
 * @param {{ lastEventId?: string, channels?: Iterable<string> }} [extra]
 */
export function withStreamParams(url, { lastEventId = '', channels = [] } = {}) {
  const { path, params, hash } = splitUrl(url);
  const named = new Set(params.getAll('channel'));
  const added = [...new Set(channels)].filter((channel) => !named.has(channel));
  if (!lastEventId && added.length === 0) return url;
  for (const channel of added) params.append('channel', channel);
  if (lastEventId) params.set('lastEventId', lastEventId);
  return path + '?' + params.toString() + hash;
}

/**
 * `url` with its `lastEventId` query parameter set to `id`; the rest of the
 * URL (path, other parameters, fragment) is kept.
 * @param {string} url
 * @param {string} id
 */
export function withLastEventId(url, id) {
  const { path, params, hash } = splitUrl(url);
  params.set('lastEventId', id);
  return path + '?' + params.toString() + hash;
}

/**
 * The delay before reconnection attempt `attempt` (1 for the first):
 * uniformly random between 0 and min(max, base * 2^(attempt - 1)).
 * @param {number} attempt
 * @param {number} base
 * @param {number} max
 * @param {() => number} [random]
 */
export function backoffDelay(attempt, base, max, random = Math.random) {
  const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

/**
 * The default `channelRequest`: `POST {stream path}/subscribe` (or
 * `/unsubscribe`) with `{"clientId", "channel"}`, as the servers' HTTP API
 * takes it. Rejects unless the answer is a 2xx.
 * @param {{ action: 'subscribe' | 'unsubscribe', clientId: string, channel: string, url: string, withCredentials: boolean }} request
 */
export async function postChannelRequest({ action, clientId, channel, url, withCredentials }) {
  const path = splitUrl(url).path.replace(/\/+$/, '');
  const response = await globalThis.fetch(`${path}/${action}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ clientId, channel }),
    credentials: withCredentials ? 'include' : 'same-origin',
  });
  if (!response.ok) throw new Error(`${action} ${JSON.stringify(channel)} answered ${response.status}`);
}

// Events the server sent arrive as MessageEvents (data and lastEventId); the
// connection's own `open` and `error` events are plain Events. A server event
// named "open" or "error" must not be taken for the connection's.
function isServerEvent(event) {
  return event != null && typeof event.data === 'string' && 'lastEventId' in event;
}

function report(error) {
  if (typeof globalThis.reportError === 'function') {
    globalThis.reportError(error);
  } else {
    console.error(error);
  }
}

function nonNegative(value, name) {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new TypeError(`SSEClient: ${name} must be a non-negative number, not ${String(value)}`);
  }
  return value;
}

function isThenable(value) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function';
}

function randomId() {
  const crypto = globalThis.crypto;
  if (typeof crypto?.randomUUID === 'function') return crypto.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

const defaultClock = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id),
  now: () => Date.now(),
};

// The link between the tabs that share one connection: a BroadcastChannel
// named after the stream, and a Web Lock of the same name that the tab
// holding the connection keeps until it disconnects or goes away.
class TabLink {
  constructor(client, key, BroadcastChannelImpl, locks) {
    this.client = client;
    this.key = key;
    this.id = randomId();
    /** @type {Map<string, { channels: string[], types: string[] }>} what the other tabs announced */
    this.tabs = new Map();
    this.holding = false;
    this._BroadcastChannel = BroadcastChannelImpl;
    this._locks = locks;
    this._bus = null;
    this._abort = null;
    this._release = null;
    this._onPageHide = () => this.post({ t: 'bye' });
  }

  get active() {
    return this._bus !== null;
  }

  join() {
    if (this._bus) return;
    const bus = new this._BroadcastChannel(this.key);
    bus.onmessage = (message) => this.client._onShared(message.data);
    this._bus = bus;
    this._abort = typeof AbortController === 'function' ? new AbortController() : null;
    globalThis.addEventListener?.('pagehide', this._onPageHide);
    this.post({ t: 'hello', ...this.client._announcement() });
    const options = this._abort ? { signal: this._abort.signal } : {};
    Promise.resolve()
      .then(() =>
        this._locks.request(this.key, options, () => {
          if (this._bus !== bus) return undefined;
          return new Promise((resolve) => {
            this._release = resolve;
            this.holding = true;
            this.client._becomeHolder();
          });
        }),
      )
      .catch((error) => {
        if (error?.name !== 'AbortError') report(error);
      });
  }

  leave() {
    if (!this._bus) return;
    this.post({ t: 'bye' });
    globalThis.removeEventListener?.('pagehide', this._onPageHide);
    this._abort?.abort();
    this._release?.();
    this._release = null;
    this.holding = false;
    this._bus.close();
    this._bus = null;
    this.tabs.clear();
  }

  post(message) {
    try {
      this._bus?.postMessage({ ...message, tab: this.id });
    } catch (error) {
      report(error);
    }
  }
}

/** A reconnecting EventSource with the state a user interface needs. */
export class SSEClient {
  /** @param {object | string} [options] the options, or just the URL */
  constructor(options = {}) {
    const opts = typeof options === 'string' ? { url: options } : { ...options };
    opts.url ??= DEFAULTS.url;
    if (typeof opts.url !== 'string' && typeof opts.url !== 'function') {
      throw new TypeError('SSEClient: the url option must be a string or a function');
    }
    /** The stream URL, or a function returning it (read at every new EventSource). */
    this.url = opts.url;
    this._options = opts;
    this._base = nonNegative(opts.reconnectInterval ?? DEFAULTS.reconnectInterval, 'reconnectInterval');
    this._cap = nonNegative(opts.maxReconnectInterval ?? DEFAULTS.maxReconnectInterval, 'maxReconnectInterval');
    this._maxAttempts = nonNegative(opts.maxReconnectAttempts ?? DEFAULTS.maxReconnectAttempts, 'maxReconnectAttempts');
    this._maxEvents = Math.max(0, Math.floor(nonNegative(opts.maxEvents ?? DEFAULTS.maxEvents, 'maxEvents')));
    this._parse = opts.parse ?? parseData;
    this._random = opts.random ?? Math.random;
    this._clock = { ...defaultClock, ...opts.clock };
    this._EventSource = opts.EventSource ?? globalThis.EventSource;
    this._channelRequest = opts.channelRequest ?? postChannelRequest;

    this._state = 'closed';
    this._lastError = null;
    this._errorSeq = 0;
    this._closeReason = null;
    this._lastEvent = null;
    this._events = Object.freeze([]);
    this._lastEventId = opts.lastEventId ? String(opts.lastEventId) : '';
    this._attempts = 0;
    this._attemptsBeforeOpen = 0;
    this._refreshed = false;
    this._source = null;
    this._sourceLastId = '';
    this._streamUrl = '';
    this._generation = 0;
    this._pending = false;
    this._timer = null;
    this._listeners = new Set();
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    this._attached = new Set();
    this._baseTypes = new Set([...BUILT_IN_TYPES, ...(opts.eventTypes ?? [])]);
    for (const [type, handler] of Object.entries(opts.eventHandlers ?? {})) {
      this._baseTypes.add(type);
      if (typeof handler === 'function') this._handlersOf(type).add(handler);
    }
    this._clientId = '';
    this._connChannels = new Set();
    this._urlChannels = new Set();
    this._ownChannels = new Set();
    this._inflight = new Set();
    this._refused = new Set();
    /** @type {Map<string, Array<{ resolve: () => void, reject: (error: Error) => void }>>} */
    this._waiters = new Map();
    this._seen = new Set();
    this._posted = '';
    this._holderTab = null;
    this._mirroredError = null;
    this._link = null;
    if (opts.shareAcrossTabs) {
      const BroadcastChannelImpl = opts.BroadcastChannel ?? globalThis.BroadcastChannel;
      const locks = opts.locks ?? globalThis.navigator?.locks;
      if (typeof BroadcastChannelImpl === 'function' && typeof locks?.request === 'function') {
        this._link = new TabLink(this, this._shareKey(opts.shareAcrossTabs), BroadcastChannelImpl, locks);
      }
    }
    this._snapshot = null;
    this._refreshSnapshot();

    this._onOpen = this._onOpen.bind(this);
    this._onError = this._onError.bind(this);
    this._onEvent = this._onEvent.bind(this);

    if (opts.autoConnect ?? DEFAULTS.autoConnect) this.connect();
  }

  /** 'connecting' | 'connected' | 'closed' */
  get state() {
    return this._state;
  }

  /** Whether the stream is open. */
  get isConnected() {
    return this._state === 'connected';
  }

  /** The last connection failure since the last successful open, or null. */
  get lastError() {
    return this._lastError;
  }

  /** The last event received, or null. */
  get lastEvent() {
    return this._lastEvent;
  }

  /** The last `maxEvents` events received, oldest first (a new array at every change). */
  get events() {
    return this._events;
  }

  /** The id of the last event that carried one ('' if none yet). */
  get lastEventId() {
    return this._lastEventId;
  }

  /** Failed connection attempts since the last successful open. */
  get reconnectAttempts() {
    return this._attempts;
  }

  /** The current EventSource, or null while closed, waiting to retry, or in a tab that does not hold it. */
  get eventSource() {
    return this._source;
  }

  /** The server's id of the current connection (its `connected` event's `clientId`), or ''. */
  get clientId() {
    return this._clientId;
  }

  /** The channels the current connection is in, as the server confirmed them, sorted. */
  get channels() {
    return this._snapshot.channels;
  }

  /** 'solo' (a connection of its own), 'holder' (holds the one shared by the tabs) or 'follower'. */
  get tabRole() {
    if (!this._link) return 'solo';
    return this._link.holding ? 'holder' : 'follower';
  }

  /**
   * The state as one immutable object, replaced at every change (for
   * `useSyncExternalStore` and the like).
   */
  getSnapshot() {
    return this._snapshot;
  }

  /**
   * Calls `listener(snapshot, client)` after every change of state, error,
   * or events. Returns the function that unsubscribes it.
   * @param {(snapshot: object, client: SSEClient) => void} listener
   */
  subscribe(listener) {
    this._listeners.add(listener);
    return () => {
      this._listeners.delete(listener);
    };
  }

  /**
   * Calls `handler(event)` for every event named `type` (also listened to
   * on connections opened later). Returns the function that removes it.
   * @param {string} type
   * @param {(event: object) => void} handler
   */
  on(type, handler) {
    const listened = this._isListened(type);
    this._handlersOf(type).add(handler);
    if (!listened) this._typesChanged();
    return () => {
      const handlers = this._handlers.get(type);
      if (!handlers || !handlers.delete(handler)) return;
      if (handlers.size === 0) this._handlers.delete(type);
      if (!this._isListened(type)) this._typesChanged();
    };
  }

  /**
   * Opens the stream. Does nothing while a connection is open or being
   * opened; while waiting to retry, tries at once. After `disconnect()`, the
   * new connection resumes from the last event id.
   */
  connect() {
    if (this._link && !this._link.holding) {
      if (!this._link.active) {
        this._set({ state: 'connecting' });
        this._link.join();
      } else if (this._state === 'closed') {
        this._link.post({ t: 'reconnect' });
      }
      return;
    }
    if (this._source || this._pending) return;
    this._clearTimer();
    this._attempts = 0;
    this._refreshed = false;
    this._open();
  }

  /**
   * Opens a new connection now, whatever the state: closes the current one
   * (resuming from the last event id) or cancels a pending retry. In a tab
   * that does not hold a shared connection, asks the tab that does.
   */
  reconnect() {
    if (this._link && !this._link.holding) {
      if (this._link.active) this._link.post({ t: 'reconnect' });
      else this.connect();
      return;
    }
    this._clearTimer();
    this._cancelPending();
    this._closeSource();
    this._attempts = 0;
    this._refreshed = false;
    this._open();
  }

  /** Closes the stream and cancels any pending reconnection (a tab sharing one leaves it). */
  disconnect() {
    this._clearTimer();
    this._cancelPending();
    this._closeSource();
    this._link?.leave();
    const attempts = this._attempts;
    this._attempts = 0;
    if (this._state !== 'closed') {
      this._closeReason = 'disconnect';
      this._set({ state: 'closed' });
      this._call('onClose', { reason: 'disconnect' });
    } else if (attempts !== 0) {
      this._changed();
    }
  }

  /** Empties the event history (`lastEvent` is kept). */
  clearEvents() {
    if (this._events.length === 0) return;
    this._events = Object.freeze([]);
    this._changed();
  }

  /**
   * Joins `channel` at runtime: the current connection through
   * `channelRequest` (by default `POST {stream}/subscribe`), and every later
   * one through a `channel` query parameter. Resolves once the connection is
   * in the channel (at the next connection while none is open); rejects if
   * the request fails. With `shareAcrossTabs`, the tab holding the
   * connection joins it, for every tab.
   * @param {string} channel
   * @returns {Promise<void>}
   */
  joinChannel(channel) {
    const name = String(channel ?? '');
    if (!name) return Promise.reject(new TypeError('SSEClient: a channel name is required'));
    const promise = new Promise((resolve, reject) => {
      const waiters = this._waiters.get(name) ?? [];
      waiters.push({ resolve, reject });
      this._waiters.set(name, waiters);
    });
    if (!this._ownChannels.has(name)) {
      this._ownChannels.add(name);
      this._refused.delete(name);
      this._announce();
    }
    this._ensureChannels();
    this._settleWaiters();
    return promise;
  }

  /**
   * Leaves a channel joined with `joinChannel`: later connections no longer
   * name it, and the current one leaves it once no tab wants it.
   * @param {string} channel
   */
  leaveChannel(channel) {
    const name = String(channel ?? '');
    if (!this._ownChannels.delete(name)) return;
    this._rejectWaiters(name, new Error(`left channel ${JSON.stringify(name)}`));
    this._announce();
    this._ensureChannels();
  }

  // ---- internals: connection ----------------------------------------------

  _handlersOf(type) {
    let handlers = this._handlers.get(type);
    if (!handlers) {
      handlers = new Set();
      this._handlers.set(type, handlers);
    }
    return handlers;
  }

  /** Whether this tab's own options or handlers ask for `type`. */
  _isListened(type) {
    return this._baseTypes.has(type) || (this._handlers.get(type)?.size ?? 0) > 0;
  }

  _ownTypes() {
    return new Set([...this._baseTypes, ...this._handlers.keys()]);
  }

  /** The names the EventSource listens to: this tab's, and the other tabs' while holding. */
  _sourceTypes() {
    const types = this._ownTypes();
    if (this._link?.holding) for (const tab of this._link.tabs.values()) for (const type of tab.types) types.add(type);
    return types;
  }

  /** The channels joined at runtime: this tab's, and the other tabs' when sharing. */
  _wantedChannels() {
    const channels = new Set(this._ownChannels);
    if (this._link) for (const tab of this._link.tabs.values()) for (const channel of tab.channels) channels.add(channel);
    return channels;
  }

  _typesChanged() {
    this._syncListeners();
    this._announce();
  }

  _syncListeners() {
    const source = this._source;
    if (!source) return;
    const wanted = this._sourceTypes();
    for (const type of wanted) {
      if (!this._attached.has(type)) source.addEventListener(type, this._onEvent);
    }
    for (const type of this._attached) {
      if (!wanted.has(type)) source.removeEventListener(type, this._onEvent);
    }
    this._attached = wanted;
  }

  // The browser retries with the same URL; a URL function (a token) or
  // channels joined at runtime need a new one at every attempt.
  _selfManaged() {
    return typeof this.url === 'function' || this._wantedChannels().size > 0;
  }

  _open() {
    this._timer = null;
    const generation = ++this._generation;
    let url;
    try {
      url = typeof this.url === 'function' ? this.url() : this.url;
    } catch (cause) {
      this._urlFailed(cause);
      return;
    }
    if (!isThenable(url)) {
      this._openWith(url);
      return;
    }
    this._pending = true;
    if (this._state !== 'connecting') this._set({ state: 'connecting' });
    Promise.resolve(url).then(
      (value) => {
        if (generation !== this._generation) return;
        this._pending = false;
        this._openWith(value);
      },
      (cause) => {
        if (generation !== this._generation) return;
        this._pending = false;
        this._urlFailed(cause);
      },
    );
  }

  _cancelPending() {
    this._generation += 1;
    this._pending = false;
  }

  _urlFailed(cause) {
    this._retryLater({ kind: 'url', message: `the url function failed: ${cause?.message ?? cause}`, cause });
  }

  _openWith(value) {
    let url;
    let source;
    try {
      url = String(value);
      this._urlChannels = new Set(splitUrl(url).params.getAll('channel'));
      url = withStreamParams(url, { lastEventId: this._lastEventId, channels: this._wantedChannels() });
      if (typeof this._EventSource !== 'function') throw new TypeError('EventSource is not available');
      source = new this._EventSource(url, { withCredentials: Boolean(this._options.withCredentials) });
    } catch (cause) {
      const error = new SSEError(`cannot open ${url ?? 'the stream'}: ${cause?.message ?? cause}`, {
        kind: 'invalid',
        attempt: 0,
        cause,
      });
      this._closeReason = 'error';
      this._set({ state: 'closed', lastError: error });
      this._call('onError', error);
      this._call('onClose', { reason: 'error' });
      return;
    }
    this._source = source;
    this._sourceLastId = '';
    this._streamUrl = url;
    source.addEventListener('open', this._onOpen);
    source.addEventListener('error', this._onError);
    this._attached = new Set();
    this._syncListeners();
    this._set({ state: 'connecting' });
  }

  _closeSource() {
    const source = this._source;
    if (!source) return;
    this._source = null;
    source.removeEventListener('open', this._onOpen);
    source.removeEventListener('error', this._onError);
    for (const type of this._attached) source.removeEventListener(type, this._onEvent);
    this._attached = new Set();
    source.close();
    this._clientId = '';
    this._connChannels = new Set();
    this._refused.clear();
  }

  _clearTimer() {
    if (this._timer !== null) {
      this._clock.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  _onOpen(event) {
    if (isServerEvent(event) || event.target !== this._source) return;
    this._attemptsBeforeOpen = this._attempts;
    this._attempts = 0;
    this._refreshed = false;
    this._set({ state: 'connected', lastError: null });
    this._call('onOpen', event);
  }

  _onError(event) {
    if (isServerEvent(event) || event.target !== this._source) return;
    const source = this._source;
    const wasConnected = this._state === 'connected';
    if (source.readyState === CLOSED) {
      // The browser will not retry: this client does.
      this._closeSource();
      if (!wasConnected && typeof this.url === 'function' && !this._refreshed) {
        // Refused before it opened: an expired token's 401 or 403 looks
        // like this (EventSource shows no status). One immediate attempt
        // with a fresh URL, not counted.
        this._refreshed = true;
        const error = new SSEError('the server refused the connection; retrying with a fresh URL', {
          kind: 'refused',
          attempt: 0,
          event,
        });
        this._clearTimer();
        this._timer = this._clock.setTimeout(() => this._open(), 0);
        this._set({ state: 'connecting', lastError: error });
        this._call('onError', error);
        return;
      }
      const message = wasConnected ? 'the connection was closed' : 'the connection failed and the browser gave up';
      this._retryLater({ kind: 'closed', message, event });
      return;
    }
    if (source.readyState !== CONNECTING) return;
    const message = wasConnected ? 'the connection was lost' : 'the connection failed';
    if (this._selfManaged()) {
      this._closeSource();
      this._retryLater({ kind: 'connection', message, event });
      return;
    }
    // CONNECTING: the browser retries by itself, with Last-Event-ID.
    this._attempts += 1;
    const error = new SSEError(message, { kind: 'connection', attempt: this._attempts, event });
    if (this._exhausted()) {
      this._lastError = error;
      this._call('onError', error);
      this._giveUp(error);
      return;
    }
    this._set({ state: 'connecting', lastError: error });
    this._call('onError', error);
  }

  _onEvent(event) {
    if (!isServerEvent(event) || event.target !== this._source) return;
    // An event without an id: line keeps the previous last event id.
    const serverId = event.lastEventId !== this._sourceLastId ? event.lastEventId : '';
    this._sourceLastId = event.lastEventId;
    const message = {
      type: event.type,
      id: event.lastEventId,
      serverId,
      raw: event.data,
      receivedAt: this._clock.now(),
    };
    if (event.type === 'connected') this._connected(event.data);
    this._link?.post({ t: 'event', message });
    const record = this._deliver(message);
    if (event.type === 'overloaded' && this._source === event.target) {
      this._overloaded(record ? record.data : parseData(event.data));
    }
  }

  // One server event, from this tab's EventSource or the holding tab's.
  _deliver(message) {
    if (this._link && message.serverId) {
      if (this._seen.has(message.serverId)) return null;
      this._seen.add(message.serverId);
      if (this._seen.size > REMEMBERED_IDS) this._seen.delete(this._seen.values().next().value);
    }
    if (message.id) this._lastEventId = message.id;
    if (!this._isListened(message.type)) {
      this._changed();
      return null;
    }
    let data;
    try {
      data = this._parse(message.raw, message.type);
    } catch {
      data = message.raw;
    }
    const record = Object.freeze({
      type: message.type,
      event: message.type,
      id: message.id,
      serverId: message.serverId,
      data,
      raw: message.raw,
      receivedAt: message.receivedAt,
    });
    this._lastEvent = record;
    if (this._maxEvents > 0) {
      const kept = this._events.length >= this._maxEvents ? this._events.slice(1 - this._maxEvents) : this._events;
      this._events = Object.freeze(this._maxEvents === 1 ? [record] : [...kept, record]);
    }
    this._changed();
    for (const handler of [...(this._handlers.get(message.type) ?? [])]) {
      try {
        handler(record);
      } catch (error) {
        report(error);
      }
    }
    this._call('onMessage', record);
    if (message.type === 'reset') this._call('onReset', record);
    if (message.type === 'dropped') this._call('onDropped', record);
    return record;
  }

  // The server refused the connection for load: it sent a retry hint and
  // `overloaded`, then ends the stream. Come back after the hint at the
  // earliest, counting this as a failed attempt.
  _overloaded(data) {
    this._closeSource();
    this._attempts = this._attemptsBeforeOpen;
    const hint = data && typeof data === 'object' ? Number(data.retryMs) : NaN;
    this._retryLater({
      kind: 'overloaded',
      message: 'the server is overloaded',
      hint: Number.isFinite(hint) && hint >= 0 ? hint : undefined,
    });
  }

  _retryLater({ kind, message, event, hint, cause }) {
    this._attempts += 1;
    const error = new SSEError(message, { kind, attempt: this._attempts, event, cause });
    if (this._exhausted()) {
      this._lastError = error;
      this._call('onError', error);
      this._giveUp(error);
      return;
    }
    let delay = backoffDelay(this._attempts, this._base, this._cap, this._random);
    if (hint !== undefined) delay = Math.max(delay, hint);
    this._clearTimer();
    this._timer = this._clock.setTimeout(() => this._open(), delay);
    this._set({ state: 'connecting', lastError: error });
    this._call('onError', error);
  }

  _exhausted() {
    const max = this._maxAttempts;
    return max !== 0 && max !== Infinity && this._attempts > max;
  }

  _giveUp(cause) {
    this._clearTimer();
    this._closeSource();
    const attempts = this._attempts - 1;
    const error = new SSEError(`gave up after ${attempts} reconnection attempt${attempts === 1 ? '' : 's'}`, {
      kind: 'gave-up',
      attempt: attempts,
      cause,
    });
    this._closeReason = 'max-attempts';
    this._set({ state: 'closed', lastError: error });
    this._call('onClose', { reason: 'max-attempts', error });
  }

  // ---- internals: channels joined at runtime --------------------------------

  _connected(raw) {
    let info = null;
    try {
      info = JSON.parse(raw);
    } catch {
      // Not the servers' connected event: no clientId to work with.
    }
    this._clientId = typeof info?.clientId === 'string' ? info.clientId : '';
    this._connChannels = new Set(Array.isArray(info?.channels) ? info.channels.map(String) : []);
    this._refused.clear();
    this._ensureChannels();
    this._settleWaiters();
  }

  // The connection holds what some tab joined, and leaves what none wants
  // (the URL's own channels stay).
  _ensureChannels() {
    if (this._link && !this._link.holding) return;
    const source = this._source;
    const clientId = this._clientId;
    if (!source || !clientId) return;
    const wanted = this._wantedChannels();
    const calls = [];
    for (const channel of wanted) {
      if (!this._connChannels.has(channel) && !this._refused.has(channel)) calls.push(['subscribe', channel]);
    }
    for (const channel of this._connChannels) {
      if (!wanted.has(channel) && !this._urlChannels.has(channel)) calls.push(['unsubscribe', channel]);
    }
    for (const [action, channel] of calls) {
      if (this._inflight.has(channel)) continue;
      this._inflight.add(channel);
      const request = { action, channel, clientId, url: this._streamUrl, withCredentials: Boolean(this._options.withCredentials) };
      Promise.resolve()
        .then(() => this._channelRequest(request))
        .then(
          () => {
            if (this._source === source && this._clientId === clientId) {
              if (action === 'subscribe') this._connChannels.add(channel);
              else this._connChannels.delete(channel);
              this._changed();
            }
          },
          (cause) => {
            if (this._source === source && action === 'subscribe') this._channelFailed(channel, cause);
            else if (this._source === source) report(cause);
          },
        )
        .finally(() => {
          this._inflight.delete(channel);
          this._settleWaiters();
          this._ensureChannels();
        });
    }
  }

  _channelFailed(channel, cause) {
    this._refused.add(channel);
    const message = `cannot join channel ${JSON.stringify(channel)}: ${cause?.message ?? cause}`;
    this._link?.post({ t: 'channel-error', channel, message });
    this._dropChannel(channel, new Error(message, { cause }));
  }

  _dropChannel(channel, error) {
    if (!this._ownChannels.delete(channel)) return;
    this._rejectWaiters(channel, error);
    this._announce();
  }

  _settleWaiters() {
    for (const [channel, waiters] of [...this._waiters]) {
      if (!this._connChannels.has(channel)) continue;
      this._waiters.delete(channel);
      for (const waiter of waiters) waiter.resolve();
    }
  }

  _rejectWaiters(channel, error) {
    const waiters = this._waiters.get(channel) ?? [];
    this._waiters.delete(channel);
    for (const waiter of waiters) waiter.reject(error);
  }

  // ---- internals: tabs sharing one connection -------------------------------

  _shareKey(option) {
    const origin = globalThis.location?.origin ?? '';
    if (typeof option === 'string') return `sse-client ${origin} ${option}`;
    if (typeof this.url === 'function') return `sse-client ${origin} (url function)`;
    let url = this.url;
    try {
      url = new URL(this.url, globalThis.location?.href).href;
    } catch {
      // Kept as given.
    }
    return `sse-client ${url}`;
  }

  _announcement() {
    return { channels: [...this._ownChannels], types: [...this._ownTypes()] };
  }

  _announce() {
    if (this._link?.active) this._link.post({ t: 'tab', ...this._announcement() });
  }

  _becomeHolder() {
    this._clearTimer();
    this._attempts = 0;
    this._refreshed = false;
    this._clientId = '';
    this._connChannels = new Set();
    this._open();
  }

  _onShared(data) {
    const link = this._link;
    if (!link?.active || data === null || typeof data !== 'object') return;
    switch (data.t) {
      case 'hello':
      case 'tab':
        link.tabs.set(data.tab, {
          channels: Array.isArray(data.channels) ? data.channels.map(String) : [],
          types: Array.isArray(data.types) ? data.types.map(String) : [],
        });
        if (data.t === 'hello') {
          this._announce();
          if (link.holding) this._postState(true);
        }
        if (link.holding) {
          this._syncListeners();
          this._ensureChannels();
        }
        break;
      case 'bye':
        link.tabs.delete(data.tab);
        if (link.holding) this._ensureChannels();
        else if (data.tab === this._holderTab && this._state === 'connected') this._set({ state: 'connecting' });
        break;
      case 'event':
        if (data.message && typeof data.message === 'object') this._deliver(data.message);
        break;
      case 'state':
        if (!link.holding) this._mirror(data);
        break;
      case 'reconnect':
        if (link.holding) this.reconnect();
        break;
      case 'channel-error':
        this._dropChannel(String(data.channel), new Error(String(data.message)));
        break;
      default:
    }
  }

  // A tab that does not hold the connection shows the holder's state.
  _mirror(data) {
    this._holderTab = data.tab;
    const before = this._state;
    this._clientId = String(data.clientId ?? '');
    this._connChannels = new Set(Array.isArray(data.channels) ? data.channels : []);
    if (!this._lastEventId && data.lastEventId) this._lastEventId = String(data.lastEventId);
    this._attempts = Number(data.attempts) || 0;
    const fresh = data.error && data.errorSeq !== this._mirroredError;
    this._mirroredError = data.errorSeq;
    const error = data.error ? new SSEError(data.error.message, data.error) : null;
    this._set({ state: data.state, lastError: error });
    if (data.state === 'connected' && before !== 'connected') {
      this._call('onOpen', typeof Event === 'function' ? new Event('open') : { type: 'open' });
    }
    if (fresh) this._call('onError', error);
    if (data.state === 'closed' && before !== 'closed') this._call('onClose', { reason: data.reason ?? 'error' });
    this._settleWaiters();
  }

  _postState(force) {
    const error = this._lastError && {
      message: this._lastError.message,
      kind: this._lastError.kind,
      attempt: this._lastError.attempt,
    };
    const state = {
      t: 'state',
      state: this._state,
      attempts: this._attempts,
      clientId: this._clientId,
      channels: [...this._connChannels].sort(),
      error,
      errorSeq: this._errorSeq,
      reason: this._closeReason,
    };
    const key = JSON.stringify(state);
    if (!force && key === this._posted) return;
    this._posted = key;
    this._link.post({ ...state, lastEventId: this._lastEventId });
  }

  // ---- internals: state -------------------------------------------------------

  _set(patch) {
    if ('state' in patch) this._state = patch.state;
    if ('lastError' in patch) {
      if (patch.lastError && patch.lastError !== this._lastError) this._errorSeq += 1;
      this._lastError = patch.lastError;
    }
    this._changed();
  }

  _refreshSnapshot() {
    this._snapshot = Object.freeze({
      state: this._state,
      isConnected: this._state === 'connected',
      isConnecting: this._state === 'connecting',
      lastError: this._lastError,
      lastEvent: this._lastEvent,
      events: this._events,
      lastEventId: this._lastEventId,
      reconnectAttempts: this._attempts,
      clientId: this._clientId,
      channels: Object.freeze([...this._connChannels].sort()),
      tabRole: this.tabRole,
    });
  }

  _changed() {
    this._refreshSnapshot();
    if (this._link?.holding) this._postState(false);
    const snapshot = this._snapshot;
    for (const listener of [...this._listeners]) {
      try {
        listener(snapshot, this);
      } catch (error) {
        report(error);
      }
    }
  }

  _call(name, argument) {
    const callback = this._options[name];
    if (typeof callback !== 'function') return;
    try {
      callback(argument);
    } catch (error) {
      report(error);
    }
  }
}

export default SSEClient;
