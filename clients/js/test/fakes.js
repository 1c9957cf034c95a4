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
