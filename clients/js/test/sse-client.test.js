// Unit tests of SSEClient against a fake EventSource and a manual clock.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SSEClient, SSEError, backoffDelay, parseData, withLastEventId } from '../sse-client.js';
import { FakeClock, fakeEventSource } from './fakes.js';

/** A client on a fake EventSource and clock, with every callback recorded. */
function setup(options = {}) {
  const EventSource = fakeEventSource();
  const clock = new FakeClock();
  const calls = [];
  const record = (name) => (argument) => calls.push([name, argument]);
  const client = new SSEClient({
    url: '/api/sse?userId=alice',
    EventSource,
    clock,
    random: () => 0.5,
    onOpen: record('open'),
    onClose: record('close'),
    onError: record('error'),
    onMessage: record('message'),
    onReset: record('reset'),
    onDropped: record('dropped'),
    ...options,
  });
  const sources = EventSource.instances;
  const current = () => sources[sources.length - 1];
  const named = (name) => calls.filter(([n]) => n === name).map(([, argument]) => argument);
  return { client, EventSource, clock, calls, sources, current, named };
}

describe('connecting', () => {
  it('connects at once and tracks the state', () => {
    const { client, sources, current, named } = setup();
    assert.equal(sources.length, 1);
    assert.equal(current().url, '/api/sse?userId=alice');
    assert.equal(client.state, 'connecting');
    assert.equal(client.isConnected, false);
    current().open();
    assert.equal(client.state, 'connected');
    assert.equal(client.isConnected, true);
    assert.equal(named('open').length, 1);
    assert.equal(client.eventSource, current());
  });

  it('waits for connect() with autoConnect: false', () => {
    const { client, sources } = setup({ autoConnect: false });
    assert.equal(sources.length, 0);
    assert.equal(client.state, 'closed');
    client.connect();
    assert.equal(sources.length, 1);
    client.connect();
    assert.equal(sources.length, 1, 'connect() while connecting does nothing');
  });

  it('passes withCredentials and reads a function URL for every EventSource', () => {
    let n = 0;
    const { sources, current, client } = setup({ url: () => `/api/sse?access_token=t${++n}`, withCredentials: true });
    assert.equal(current().withCredentials, true);
    assert.equal(current().url, '/api/sse?access_token=t1');
    client.disconnect();
    client.connect();
    assert.equal(sources.length, 2);
    assert.equal(current().url, '/api/sse?access_token=t2');
  });

  it('accepts a URL alone', () => {
    const EventSource = fakeEventSource();
    globalThis.EventSource = EventSource;
    try {
      const client = new SSEClient('/stream');
      assert.equal(EventSource.instances[0].url, '/stream');
      client.disconnect();
    } finally {
      delete globalThis.EventSource;
    }
  });

  it('reports a URL it cannot open as closed with an error', () => {
    class Throwing {
      constructor() {
        throw new SyntaxError('bad URL');
      }
    }
    const calls = [];
    const client = new SSEClient({
      url: 'http://[',
      EventSource: Throwing,
      onError: (error) => calls.push(['error', error]),
      onClose: (info) => calls.push(['close', info]),
    });
    assert.equal(client.state, 'closed');
    assert.equal(client.lastError.kind, 'invalid');
    assert.deepEqual(
      calls.map(([name]) => name),
      ['error', 'close'],
    );
    assert.equal(calls[1][1].reason, 'error');
  });

  it('rejects bad options', () => {
    assert.throws(() => new SSEClient({ url: 42 }), TypeError);
    assert.throws(() => new SSEClient({ url: '/s', reconnectInterval: -1, autoConnect: false }), TypeError);
    assert.throws(() => new SSEClient({ url: '/s', maxReconnectAttempts: NaN, autoConnect: false }), TypeError);
  });
});

describe('backoff', () => {
  it('doubles from reconnectInterval up to maxReconnectInterval, with full jitter', () => {
    const randoms = [0.5, 0.999999, 0, 0.25, 0.5, 0.999999, 0.75, 0.5];
    let i = 0;
    const { client, clock, sources, current } = setup({
      reconnectInterval: 100,
      maxReconnectInterval: 1000,
      maxReconnectAttempts: 0,
      random: () => randoms[i++ % randoms.length],
    });
    current().open();
    for (let n = 0; n < 8; n++) {
      current().fail();
      assert.equal(client.state, 'connecting');
      assert.equal(clock.pending, 1, 'one reconnection is scheduled');
      const before = sources.length;
      clock.runNext();
      assert.equal(sources.length, before + 1, 'a new EventSource after the delay');
    }
    // Ceilings 100, 200, 400, 800, 1000 (the cap), 1000, ...
    assert.deepEqual(clock.delays, [50, 199, 0, 200, 500, 999, 750, 500]);
    client.disconnect();
  });

  it('keeps every delay within [0, min(cap, base * 2^(n-1)))', () => {
    for (let attempt = 1; attempt <= 40; attempt++) {
      const ceiling = Math.min(30_000, 5_000 * 2 ** (attempt - 1));
      for (let k = 0; k < 50; k++) {
        const delay = backoffDelay(attempt, 5_000, 30_000);
        assert.ok(delay >= 0 && delay < ceiling, `attempt ${attempt}: ${delay} outside [0, ${ceiling})`);
        assert.ok(Number.isInteger(delay));
      }
    }
    assert.equal(backoffDelay(1, 5_000, 30_000, () => 0.999999), 4_999);
    assert.equal(backoffDelay(3, 5_000, 30_000, () => 0.999999), 19_999);
    assert.equal(backoffDelay(4, 5_000, 30_000, () => 0.999999), 29_999);
    assert.equal(backoffDelay(1000, 5_000, 30_000, () => 0.999999), 29_999, 'no overflow for large attempts');
  });

  it('uses the defaults: 5000 ms base, 30000 ms cap, 5 attempts', () => {
    const { clock, current, sources, client, named } = setup({ random: () => 0.999999 });
    current().open();
    for (let n = 0; n < 5; n++) {
      current().fail();
      clock.runNext();
    }
    assert.deepEqual(clock.delays, [4999, 9999, 19999, 29999, 29999]);
    current().fail();
    assert.equal(client.state, 'closed');
    assert.equal(sources.length, 6);
    assert.equal(named('close')[0].reason, 'max-attempts');
  });

  it('leaves retries to the browser while the EventSource is CONNECTING', () => {
    const { client, clock, sources, current, named } = setup();
    current().open();
    current().drop();
    assert.equal(client.state, 'connecting');
    assert.equal(clock.pending, 0, 'no timer of its own');
    assert.equal(sources.length, 1, 'no new EventSource');
    assert.equal(named('error')[0].kind, 'connection');
    current().open();
    assert.equal(client.state, 'connected');
    assert.equal(named('open').length, 2);
    assert.equal(client.lastError, null, 'the error is cleared on reconnection');
    client.disconnect();
  });
});

describe('maxReconnectAttempts', () => {
  it('gives up after that many failed attempts, then stays closed', () => {
    const { client, clock, sources, current, named } = setup({ maxReconnectAttempts: 3 });
    current().open();
    current().fail();
    for (let n = 1; n <= 3; n++) {
      assert.equal(client.reconnectAttempts, n);
      clock.runNext();
      current().fail();
    }
    assert.equal(sources.length, 4, 'the first connection and 3 attempts');
    assert.equal(client.state, 'closed');
    assert.equal(clock.pending, 0);
    assert.equal(client.lastError.kind, 'gave-up');
    assert.equal(client.lastError.attempt, 3);
    assert.match(client.lastError.message, /gave up after 3 reconnection attempts/);
    assert.deepEqual(named('close'), [{ reason: 'max-attempts', error: client.lastError }]);
    assert.equal(named('error').length, 4, 'every failure was reported');
    clock.advance(10 * 60_000);
    assert.equal(sources.length, 4, 'nothing more');
  });

  it('counts the browser’s own failed retries too', () => {
    const { client, current, sources, named } = setup({ maxReconnectAttempts: 2 });
    current().open();
    current().drop(); // lost: the browser's attempt 1
    current().drop(); // attempt 1 failed: attempt 2
    assert.equal(client.state, 'connecting');
    current().drop(); // attempt 2 failed: over the limit
    assert.equal(client.state, 'closed');
    assert.equal(current().readyState, 2, 'the EventSource is closed');
    assert.equal(current().closeCalls, 1);
    assert.equal(sources.length, 1);
    assert.equal(named('close')[0].reason, 'max-attempts');
  });

  it('starts counting again after a successful open', () => {
    const { client, clock, current } = setup({ maxReconnectAttempts: 2 });
    current().open();
    for (let round = 0; round < 5; round++) {
      current().fail();
      clock.runNext();
      current().fail();
      clock.runNext();
      current().open();
      assert.equal(client.reconnectAttempts, 0);
    }
    assert.equal(client.state, 'connected');
    client.disconnect();
  });

  for (const unlimited of [0, Infinity]) {
    it(`never gives up with ${unlimited}`, () => {
      const { client, clock, current, sources } = setup({ maxReconnectAttempts: unlimited });
      for (let n = 0; n < 50; n++) {
        current().fail();
        clock.runNext();
      }
      assert.equal(sources.length, 51);
      assert.equal(client.state, 'connecting');
      assert.equal(clock.delays.at(-1), 15_000, 'the cap holds');
      client.disconnect();
    });
  }
});

describe('resuming', () => {
  it('passes the last event id as lastEventId to every EventSource it creates', () => {
    const { client, clock, current } = setup();
    current().open();
    current().emit('message', 'one', '41');
    current().emit('message', 'two', '42');
    current().emit('connected', '{"clientId":"c"}'); // no id: keeps 42
    assert.equal(client.lastEventId, '42');
    current().fail();
    clock.runNext();
    assert.equal(current().url, '/api/sse?userId=alice&lastEventId=42');
    current().open();
    current().emit('message', 'three', '43');
    client.disconnect();
    client.connect();
    assert.equal(current().url, '/api/sse?userId=alice&lastEventId=43', 'replaced, not repeated');
  });

  it('takes a first id from the options', () => {
    const { current } = setup({ url: '/api/sse', lastEventId: 'abc' });
    assert.equal(current().url, '/api/sse?lastEventId=abc');
  });

  it('builds the URL without disturbing the rest', () => {
    assert.equal(withLastEventId('/api/sse', '7'), '/api/sse?lastEventId=7');
    assert.equal(withLastEventId('/api/sse?channel=a&channel=b', '7'), '/api/sse?channel=a&channel=b&lastEventId=7');
    assert.equal(withLastEventId('https://h/s?lastEventId=1&x=2#f', '7'), 'https://h/s?lastEventId=7&x=2#f');
    assert.equal(withLastEventId('/s', 'a b&c'), '/s?lastEventId=a+b%26c');
  });
});

describe('events', () => {
  it('calls handlers by name, parses JSON, keeps the raw text', () => {
    const seen = [];
    const { client, current, named } = setup({
      eventHandlers: { notification: (event) => seen.push(['notification', event]) },
    });
    current().open();
    current().emit('notification', '{"title":"hi"}', '1');
    current().emit('notification', 'plain text', '2');
    current().emit('other', 'not listened', '3');
    current().emit('message', '[1,2]', '4');
    assert.equal(seen.length, 2);
    assert.deepEqual(seen[0][1].data, { title: 'hi' });
    assert.equal(seen[0][1].raw, '{"title":"hi"}');
    assert.equal(seen[0][1].type, 'notification');
    assert.equal(seen[0][1].id, '1');
    assert.equal(seen[1][1].data, 'plain text');
    assert.deepEqual(
      named('message').map((e) => e.type),
      ['notification', 'notification', 'message'],
      'onMessage sees every listened event',
    );
    assert.deepEqual(client.lastEvent.data, [1, 2]);
    client.disconnect();
  });

  it('adds and removes handlers with on(), on the open connection too', () => {
    const { client, current } = setup();
    current().open();
    const seen = [];
    const off = client.on('chat', (event) => seen.push(event.data));
    assert.ok(current().listenedTypes.includes('chat'));
    current().emit('chat', 'hello');
    off();
    off();
    assert.ok(!current().listenedTypes.includes('chat'));
    current().emit('chat', 'unheard');
    assert.deepEqual(seen, ['hello']);
    const offAgain = client.on('chat', (event) => seen.push(`again ${event.data}`));
    current().fail();
    client.connect();
    assert.ok(current().listenedTypes.includes('chat'), 'listened on the new EventSource');
    current().emit('chat', 'there');
    assert.deepEqual(seen, ['hello', 'again there']);
    offAgain();
    client.disconnect();
  });

  it('never takes a server event named open or error for the connection’s', () => {
    const { client, current, named } = setup({ eventHandlers: { open: () => {}, error: () => {} } });
    current().emit('open', 'server data');
    assert.equal(client.state, 'connecting');
    assert.equal(named('open').length, 0);
    current().open();
    current().emit('error', 'server data');
    assert.equal(client.state, 'connected');
    assert.equal(named('error').length, 0);
    assert.deepEqual(
      client.events.map((e) => e.type),
      ['open', 'error'],
    );
    client.disconnect();
  });

  it('listens to eventTypes without handlers', () => {
    const { client, current } = setup({ eventTypes: ['progress'] });
    current().open();
    current().emit('progress', '{"percent":50}');
    assert.deepEqual(client.lastEvent.data, { percent: 50 });
    client.disconnect();
  });

  it('uses a custom parse and survives failing handlers', (t) => {
    const errors = t.mock.method(console, 'error', () => {});
    const seen = [];
    const { client, current } = setup({
      parse: (raw, type) => `${type}:${raw.toUpperCase()}`,
      eventHandlers: {
        a: () => {
          throw new Error('handler bug');
        },
        b: (event) => seen.push(event.data),
      },
      onMessage: () => {
        throw new Error('callback bug');
      },
    });
    current().open();
    current().emit('a', 'x');
    current().emit('b', 'y');
    assert.deepEqual(seen, ['b:Y']);
    assert.equal(client.events.length, 2);
    assert.equal(errors.mock.callCount(), 3, 'each throw is reported');
    client.disconnect();
  });

  it('keeps the last maxEvents events with their receive time', () => {
    const { client, clock, current } = setup({ maxEvents: 3 });
    current().open();
    const arrays = new Set([client.events]);
    for (let n = 1; n <= 5; n++) {
      clock.advance(1000);
      current().emit('message', String(n), String(n));
      arrays.add(client.events);
    }
    assert.deepEqual(
      client.events.map((e) => e.data),
      [3, 4, 5],
      'oldest first, capped',
    );
    assert.deepEqual(
      client.events.map((e) => e.receivedAt - clock.time),
      [-2000, -1000, 0],
    );
    assert.equal(arrays.size, 6, 'a new array at every event');
    assert.ok(Object.isFrozen(client.events));
    assert.ok(Object.isFrozen(client.lastEvent));
    client.clearEvents();
    assert.deepEqual(client.events, []);
    assert.equal(client.lastEvent.data, 5, 'lastEvent is kept');
    client.disconnect();
  });

  it('keeps 100 events by default, none with maxEvents: 0', () => {
    const { client, current } = setup();
    current().open();
    for (let n = 0; n < 150; n++) current().emit('message', String(n));
    assert.equal(client.events.length, 100);
    assert.equal(client.events[0].data, 50);
    client.disconnect();
    const none = setup({ maxEvents: 0 });
    none.current().open();
    none.current().emit('message', 'x');
    assert.equal(none.client.events.length, 0);
    assert.equal(none.client.lastEvent.data, 'x');
    none.client.disconnect();
  });

  it('calls onDropped with the count of events the server dropped, and stays connected', () => {
    const { client, current, named, sources } = setup({ eventTypes: ['update', 'alert'] });
    current().open();
    current().emit('update', '1', '7');
    current().emit('dropped', '{"dropped":3}');
    current().emit('alert', '"high"', '11');
    assert.equal(named('dropped').length, 1);
    assert.deepEqual(named('dropped')[0].data, { dropped: 3 });
    assert.deepEqual(
      named('message').map((event) => event.type),
      ['update', 'dropped', 'alert'],
      'the events around it arrive in order',
    );
    assert.equal(client.lastEventId, '11');
    assert.equal(client.state, 'connected');
    assert.equal(sources.length, 1);
    client.disconnect();
  });

  it('calls onReset on a reset and stays connected', () => {
    const { client, current, named, sources } = setup();
    current().open();
    current().emit('reset', '{"reason":"last-event-id-unknown"}', '99');
    assert.equal(named('reset').length, 1);
    assert.deepEqual(named('reset')[0].data, { reason: 'last-event-id-unknown' });
    assert.equal(client.lastEventId, '99', 'resumes from the reset’s id');
    assert.equal(client.state, 'connected');
    assert.equal(sources.length, 1);
    client.disconnect();
  });
});

describe('overloaded', () => {
  it('closes and comes back no sooner than the server’s retryMs', () => {
    const { client, clock, current, sources, named } = setup({ reconnectInterval: 100 });
    current().open();
    current().emit('message', 'm', '5');
    current().fail();
    clock.runNext();
    const refused = current();
    refused.open();
    refused.emit('overloaded', '{"retryMs":2500}');
    assert.equal(refused.closeCalls, 1, 'the refused stream is closed');
    assert.equal(client.state, 'connecting');
    assert.equal(client.lastError.kind, 'overloaded');
    assert.equal(client.reconnectAttempts, 2, 'the refusal counts as a failed attempt');
    assert.equal(clock.delays.at(-1), 2500);
    clock.advance(2499);
    assert.equal(sources.length, 2);
    clock.advance(1);
    assert.equal(sources.length, 3);
    assert.equal(current().url, '/api/sse?userId=alice&lastEventId=5');
    assert.deepEqual(
      named('error').map((e) => e.kind),
      ['closed', 'overloaded'],
    );
    client.disconnect();
  });

  it('backs off without a readable hint and gives up when refused too often', () => {
    const { client, clock, current, sources } = setup({ maxReconnectAttempts: 2, random: () => 0.999999 });
    current().open();
    current().emit('overloaded', 'not json');
    assert.equal(clock.delays.at(-1), 4999);
    clock.runNext();
    current().open();
    current().emit('overloaded', '{"retryMs":1}');
    assert.equal(clock.delays.at(-1), 9999, 'the backoff when longer than the hint');
    clock.runNext();
    current().open();
    current().emit('overloaded', '{"retryMs":1}');
    assert.equal(client.state, 'closed');
    assert.equal(client.lastError.kind, 'gave-up');
    assert.equal(sources.length, 3);
    assert.equal(clock.pending, 0);
  });
});

describe('disconnect', () => {
  it('cancels a pending reconnection and leaves no timer or listener', () => {
    const { client, clock, current, sources, named } = setup();
    current().open();
    current().fail();
    assert.equal(clock.pending, 1);
    client.disconnect();
    assert.equal(clock.pending, 0);
    assert.equal(client.state, 'closed');
    assert.deepEqual(named('close'), [{ reason: 'disconnect' }]);
    client.disconnect();
    assert.equal(named('close').length, 1, 'onClose once');
    clock.advance(60_000);
    assert.equal(sources.length, 1);
  });

  it('closes the open EventSource, removes its listeners and ignores it afterwards', () => {
    const { client, current, named, clock } = setup({ eventHandlers: { chat: () => {} } });
    const source = current();
    source.open();
    client.on('extra', () => {});
    client.disconnect();
    assert.equal(source.closeCalls, 1);
    assert.deepEqual(source.listenedTypes, [], 'no listener left');
    const before = client.getSnapshot();
    source.emit('chat', 'late');
    source.fail();
    assert.equal(client.getSnapshot(), before, 'nothing changes');
    assert.equal(named('error').length, 0);
    assert.equal(clock.pending, 0);
  });

  it('connect() while waiting to retry tries at once', () => {
    const { client, clock, current, sources } = setup();
    current().open();
    current().fail();
    assert.equal(clock.pending, 1);
    client.connect();
    assert.equal(clock.pending, 0);
    assert.equal(sources.length, 2);
    assert.equal(client.reconnectAttempts, 0);
    client.disconnect();
  });

  it('connect() after giving up starts over', () => {
    const { client, clock, current, sources } = setup({ maxReconnectAttempts: 1 });
    current().open();
    current().emit('message', 'x', '8');
    current().fail();
    clock.runNext();
    current().fail();
    assert.equal(client.state, 'closed');
    client.connect();
    assert.equal(sources.length, 3);
    assert.equal(current().url, '/api/sse?userId=alice&lastEventId=8');
    current().open();
    assert.equal(client.state, 'connected');
    assert.equal(client.lastError, null);
    client.disconnect();
  });
});

describe('subscribe', () => {
  it('notifies every change with a new immutable snapshot until unsubscribed', () => {
    const { client, current } = setup({ autoConnect: false });
    const snapshots = [];
    const unsubscribe = client.subscribe((snapshot, which) => {
      assert.equal(which, client);
      snapshots.push(snapshot);
    });
    client.connect();
    current().open();
    current().emit('message', 'hello', '1');
    current().drop();
    assert.deepEqual(
      snapshots.map((s) => s.state),
      ['connecting', 'connected', 'connected', 'connecting'],
    );
    assert.equal(snapshots[2].lastEvent.data, 'hello');
    assert.equal(snapshots[2].lastEventId, '1');
    assert.ok(snapshots.every((s) => Object.isFrozen(s)));
    assert.equal(new Set(snapshots).size, snapshots.length);
    assert.equal(client.getSnapshot(), snapshots.at(-1));
    assert.equal(snapshots.at(-1).isConnecting, true);
    assert.ok(snapshots.at(-1).lastError instanceof SSEError);
    unsubscribe();
    client.disconnect();
    assert.equal(snapshots.length, 4);
  });
});

describe('parseData', () => {
  it('parses JSON and keeps anything else as text', () => {
    assert.deepEqual(parseData('{"a":1}'), { a: 1 });
    assert.equal(parseData('line1\nline2'), 'line1\nline2');
    assert.equal(parseData(''), '');
    assert.equal(parseData('null'), null);
  });
});
