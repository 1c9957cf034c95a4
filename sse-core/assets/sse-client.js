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
// it. The same file is served by every server adapter at `/api/sse/client.js`.

const CONNECTING = 0;
const CLOSED = 2;

/** Event names listened to whatever the options: the server's own events. */
const BUILT_IN_TYPES = ['message', 'connected', 'reset', 'overloaded'];

const DEFAULTS = {
  autoConnect: true,
  reconnectInterval: 5000,
  maxReconnectInterval: 30000,
  maxReconnectAttempts: 5,
  withCredentials: false,
  maxEvents: 100,
};

/** A connection failure, as `lastError` and `onError` report it. */
export class SSEError extends Error {
  /**
   * @param {string} message
   * @param {{ kind: string, attempt: number, event?: Event, cause?: unknown }} details
   */
  constructor(message, details) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'SSEError';
    /** 'connection' | 'closed' | 'overloaded' | 'gave-up' | 'invalid' */
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

/**
 * `url` with its `lastEventId` query parameter set to `id`; the rest of the
 * URL (path, other parameters, fragment) is kept.
 * @param {string} url
 * @param {string} id
 */
export function withLastEventId(url, id) {
  const hashAt = url.indexOf('#');
  const hash = hashAt >= 0 ? url.slice(hashAt) : '';
  const rest = hashAt >= 0 ? url.slice(0, hashAt) : url;
  const queryAt = rest.indexOf('?');
  const path = queryAt >= 0 ? rest.slice(0, queryAt) : rest;
  const params = new URLSearchParams(queryAt >= 0 ? rest.slice(queryAt + 1) : '');
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

const defaultClock = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id),
  now: () => Date.now(),
};

/** A reconnecting EventSource with the state a user interface needs. */
export class SSEClient {
  /** @param {object | string} options the options, or just the URL */
  constructor(options) {
    const opts = typeof options === 'string' ? { url: options } : { ...options };
    if (typeof opts.url !== 'string' && typeof opts.url !== 'function') {
      throw new TypeError('SSEClient: the url option is required');
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

    this._state = 'closed';
    this._lastError = null;
    this._lastEvent = null;
    this._events = Object.freeze([]);
    this._lastEventId = opts.lastEventId ? String(opts.lastEventId) : '';
    this._attempts = 0;
    this._attemptsBeforeOpen = 0;
    this._source = null;
    this._timer = null;
    this._listeners = new Set();
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    this._baseTypes = new Set([...BUILT_IN_TYPES, ...(opts.eventTypes ?? [])]);
    for (const [type, handler] of Object.entries(opts.eventHandlers ?? {})) {
      this._baseTypes.add(type);
      if (typeof handler === 'function') this._handlersOf(type).add(handler);
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

  /** The current EventSource, or null while closed or waiting to retry. */
  get eventSource() {
    return this._source;
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
    if (!listened && this._source) this._source.addEventListener(type, this._onEvent);
    return () => {
      const handlers = this._handlers.get(type);
      if (!handlers || !handlers.delete(handler)) return;
      if (handlers.size === 0) this._handlers.delete(type);
      if (!this._isListened(type) && this._source) this._source.removeEventListener(type, this._onEvent);
    };
  }

  /**
   * Opens the stream. Does nothing while a connection is open or being
   * opened; while waiting to retry, tries at once. After `disconnect()`, the
   * new connection resumes from the last event id.
   */
  connect() {
    if (this._source) return;
    this._clearTimer();
    this._attempts = 0;
    this._open();
  }

  /** Closes the stream and cancels any pending reconnection. */
  disconnect() {
    this._clearTimer();
    this._closeSource();
    const attempts = this._attempts;
    this._attempts = 0;
    if (this._state !== 'closed') {
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

  // ---- internals ---------------------------------------------------------

  _handlersOf(type) {
    let handlers = this._handlers.get(type);
    if (!handlers) {
      handlers = new Set();
      this._handlers.set(type, handlers);
    }
    return handlers;
  }

  _isListened(type) {
    return this._baseTypes.has(type) || (this._handlers.get(type)?.size ?? 0) > 0;
  }

  _open() {
    this._timer = null;
    let url;
    let source;
    try {
      url = typeof this.url === 'function' ? this.url() : this.url;
      if (this._lastEventId) url = withLastEventId(String(url), this._lastEventId);
      if (typeof this._EventSource !== 'function') throw new TypeError('EventSource is not available');
      source = new this._EventSource(url, { withCredentials: Boolean(this._options.withCredentials) });
    } catch (cause) {
      const error = new SSEError(`cannot open ${url ?? 'the stream'}: ${cause?.message ?? cause}`, {
        kind: 'invalid',
        attempt: 0,
        cause,
      });
      this._set({ state: 'closed', lastError: error });
      this._call('onError', error);
      this._call('onClose', { reason: 'error' });
      return;
    }
    this._source = source;
    source.addEventListener('open', this._onOpen);
    source.addEventListener('error', this._onError);
    for (const type of this._baseTypes) source.addEventListener(type, this._onEvent);
    for (const type of this._handlers.keys()) {
      if (!this._baseTypes.has(type)) source.addEventListener(type, this._onEvent);
    }
    this._set({ state: 'connecting' });
  }

  _closeSource() {
    const source = this._source;
    if (!source) return;
    this._source = null;
    source.removeEventListener('open', this._onOpen);
    source.removeEventListener('error', this._onError);
    for (const type of new Set([...this._baseTypes, ...this._handlers.keys()])) {
      source.removeEventListener(type, this._onEvent);
    }
    source.close();
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
      const message = wasConnected ? 'the connection was closed' : 'the connection failed and the browser gave up';
      this._retryLater({ kind: 'closed', message, event });
      return;
    }
    // CONNECTING: the browser retries by itself, with Last-Event-ID.
    if (source.readyState !== CONNECTING) return;
    this._attempts += 1;
    const message = wasConnected ? 'the connection was lost' : 'the connection failed';
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
    if (event.lastEventId) this._lastEventId = event.lastEventId;
    let data;
    try {
      data = this._parse(event.data, event.type);
    } catch {
      data = event.data;
    }
    const record = Object.freeze({
      type: event.type,
      id: event.lastEventId,
      data,
      raw: event.data,
      receivedAt: this._clock.now(),
    });
    this._lastEvent = record;
    if (this._maxEvents > 0) {
      const kept = this._events.length >= this._maxEvents ? this._events.slice(1 - this._maxEvents) : this._events;
      this._events = Object.freeze(this._maxEvents === 1 ? [record] : [...kept, record]);
    }
    this._changed();
    for (const handler of [...(this._handlers.get(event.type) ?? [])]) {
      try {
        handler(record);
      } catch (error) {
        report(error);
      }
    }
    this._call('onMessage', record);
    if (event.type === 'reset') this._call('onReset', record);
    if (event.type === 'overloaded' && this._source === event.target) this._overloaded(record);
  }

  // The server refused the connection for load: it sent a retry hint and
  // `overloaded`, then ends the stream. Come back after the hint at the
  // earliest, counting this as a failed attempt.
  _overloaded(record) {
    this._closeSource();
    this._attempts = this._attemptsBeforeOpen;
    const hint = record.data && typeof record.data === 'object' ? Number(record.data.retryMs) : NaN;
    this._retryLater({
      kind: 'overloaded',
      message: 'the server is overloaded',
      hint: Number.isFinite(hint) && hint >= 0 ? hint : undefined,
    });
  }

  _retryLater({ kind, message, event, hint }) {
    this._attempts += 1;
    const error = new SSEError(message, { kind, attempt: this._attempts, event });
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
    this._set({ state: 'closed', lastError: error });
    this._call('onClose', { reason: 'max-attempts', error });
  }

  _set(patch) {
    if ('state' in patch) this._state = patch.state;
    if ('lastError' in patch) this._lastError = patch.lastError;
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
    });
  }

  _changed() {
    this._refreshSnapshot();
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
