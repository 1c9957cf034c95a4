// Test doubles: an EventSource driven by the test and a manual clock.

/**
 * A class standing in for EventSource, with its own list of instances.
 * The test drives each instance: open(), emit(), drop() (the connection is
 * lost and the browser retries by itself: CONNECTING), fail() (the browser
 * gives up: CLOSED).
 */
export function fakeEventSource() {
  const instances = [];
  class FakeEventSource extends EventTarget {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSED = 2;
    static instances = instances;

    constructor(url, init) {
      super();
      this.url = url;
      this.withCredentials = Boolean(init?.withCredentials);
      this.readyState = FakeEventSource.CONNECTING;
      this.lastEventId = '';
      this.closeCalls = 0;
      this.listeners = new Map();
      instances.push(this);
    }

    addEventListener(type, listener, options) {
      const set = this.listeners.get(type) ?? new Set();
      set.add(listener);
      this.listeners.set(type, set);
      super.addEventListener(type, listener, options);
    }

    removeEventListener(type, listener, options) {
      this.listeners.get(type)?.delete(listener);
      if (this.listeners.get(type)?.size === 0) this.listeners.delete(type);
      super.removeEventListener(type, listener, options);
    }

    /** The event names something listens to. */
    get listenedTypes() {
      return [...this.listeners.keys()].sort();
    }

    open() {
      this.readyState = FakeEventSource.OPEN;
      this.dispatchEvent(new Event('open'));
    }

    /** A server event; `id` updates the last event id, as an `id:` line does. */
    emit(type, data, id) {
      if (id !== undefined) this.lastEventId = id;
      this.dispatchEvent(new MessageEvent(type, { data, lastEventId: this.lastEventId }));
    }

    drop() {
      this.readyState = FakeEventSource.CONNECTING;
      this.dispatchEvent(new Event('error'));
    }

    fail() {
      this.readyState = FakeEventSource.CLOSED;
      this.dispatchEvent(new Event('error'));
    }

    close() {
      this.closeCalls += 1;
      this.readyState = FakeEventSource.CLOSED;
    }
  }
  return FakeEventSource;
}

/** Timers that run only when the test advances the clock. */
export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.time = start;
    this.timers = new Map();
    this.nextId = 1;
    /** Every delay ever asked for, in order. */
    this.delays = [];
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.time + ms, fn });
      this.delays.push(ms);
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
    this.now = () => this.time;
  }

  /** How many timers are pending. */
  get pending() {
    return this.timers.size;
  }

  /** Runs the earliest pending timer, moving the time to it. */
  runNext() {
    let earliest = null;
    for (const [id, timer] of this.timers) {
      if (earliest === null || timer.at < earliest[1].at) earliest = [id, timer];
    }
    if (earliest === null) throw new Error('no pending timer');
    const [id, timer] = earliest;
    this.timers.delete(id);
    this.time = Math.max(this.time, timer.at);
    timer.fn();
  }

  /** Moves the time forward by `ms`, running the timers due meanwhile. */
  advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let due = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (due === null || timer.at < due[1].at)) due = [id, timer];
      }
      if (due === null) break;
      this.runNext();
    }
    this.time = end;
  }
}

/**
 * What tabs need to share a connection, for clients in one process: a
 * BroadcastChannel whose messages wait in a queue until `deliver()`, and a
 * lock manager granting each name to one holder at a time, in request
 * order. `settle()` delivers messages and lets promises run until nothing
 * is left to do. `crash(channel)` makes one tab vanish without a word: its
 * channel stops receiving and its lock is released.
 */
export function fakeTabs() {
  const queue = [];
  const members = new Set();
  class FakeBroadcastChannel {
    constructor(name) {
      this.name = name;
      this.onmessage = null;
      this.closed = false;
      this.posted = [];
      members.add(this);
    }

    postMessage(data) {
      if (this.closed) throw new Error('InvalidStateError: the channel is closed');
      this.posted.push(data);
      for (const member of members) {
        if (member !== this && member.name === this.name) queue.push([member, structuredClone(data)]);
      }
    }

    close() {
      this.closed = true;
      members.delete(this);
    }
  }

  const held = new Map();
  const waiting = new Map();
  const locks = {
    requests: 0,
    request(name, options, callback) {
      locks.requests += 1;
      return new Promise((resolve, reject) => {
        const entry = { callback, resolve, reject };
        const list = waiting.get(name) ?? [];
        list.push(entry);
        waiting.set(name, list);
        options?.signal?.addEventListener('abort', () => {
          const at = (waiting.get(name) ?? []).indexOf(entry);
          if (at < 0) return;
          waiting.get(name).splice(at, 1);
          reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
        });
        grant(name);
      });
    },
    /** The names held now. */
    get held() {
      return [...held.keys()];
    },
  };
  function grant(name) {
    if (held.has(name)) return;
    const next = (waiting.get(name) ?? []).shift();
    if (!next) return;
    const release = () => {
      if (held.get(name) !== next) return;
      held.delete(name);
      grant(name);
    };
    held.set(name, next);
    next.release = release;
    Promise.resolve()
      .then(() => next.callback({ name }))
      .then(
        (value) => {
          release();
          next.resolve(value);
        },
        (error) => {
          release();
          next.reject(error);
        },
      );
  }

  /** Delivers the queued messages (and those they lead to); returns how many. */
  function deliver() {
    let n = 0;
    while (queue.length > 0) {
      const [member, data] = queue.shift();
      if (!member.closed) member.onmessage?.({ data });
      n += 1;
    }
    return n;
  }

  async function settle() {
    for (let round = 0; round < 20; round++) {
      await new Promise((resolve) => setImmediate(resolve));
      deliver();
    }
  }

  /** The tab of `client` vanishes: no goodbye, its lock released. */
  function crash(client) {
    const link = client._link;
    link._bus.close();
    for (const [name, entry] of held) {
      if (entry.callback && link.holding && name === link.key) entry.release();
    }
  }

  return { BroadcastChannel: FakeBroadcastChannel, locks, deliver, settle, crash, members };
}
