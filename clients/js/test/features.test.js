// Unit tests of SSEClient's reconnect(), default URL, event records, URL
// functions (fresh tokens) and channels joined at runtime, against a fake
// EventSource and a manual clock.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SSEClient, withStreamParams } from '../sse-client.js';
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
    ...options,
  });
  const sources = EventSource.instances;
  const current = () => sources[sources.length - 1];
  const named = (name) => calls.filter(([n]) => n === name).map(([, argument]) => argument);
  return { client, EventSource, clock, calls, sources, current, named };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('reconnect()', () => {
  it('opens a new connection now while open, resuming from the last event id', () => {
    const { client, sources, current, named } = setup();
    current().open();
    current().emit('message', 'x', '7');
    const old = current();
    client.reconnect();
    assert.equal(old.closeCalls, 1);
    assert.deepEqual(old.listenedTypes, []);
    assert.equal(sources.length, 2);
    assert.equal(current().url, '/api/sse?userId=alice&lastEventId=7');
    assert.equal(client.state, 'connecting');
    assert.equal(named('close').length, 0, 'not a close');
    current().open();
    assert.equal(named('open').length, 2);
    client.disconnect();
  });

  it('cancels a pending retry and starts over after giving up', () => {
    const { client, clock, sources, current } = setup({ maxReconnectAttempts: 1 });
    current().open();
    current().fail();
    assert.equal(clock.pending, 1);
    client.reconnect();
    assert.equal(clock.pending, 0);
    assert.equal(sources.length, 2);
    assert.equal(client.reconnectAttempts, 0);
    current().fail();
    clock.runNext();
    current().fail();
    assert.equal(client.state, 'closed');
    client.reconnect();
    assert.equal(sources.length, 4);
    assert.equal(client.state, 'connecting');
    client.disconnect();
  });
});

describe('defaults and records', () => {
  it('connects to /api/sse without a url', () => {
    const EventSource = fakeEventSource();
    const client = new SSEClient({ EventSource });
    assert.equal(EventSource.instances[0].url, '/api/sse');
    client.disconnect();
    const none = new SSEClient({ EventSource, autoConnect: false });
    assert.equal(none.url, '/api/sse');
  });

  it('gives every event its name as event, its own id as serverId, and its receive time', () => {
    const { client, clock, current } = setup({ eventTypes: ['notification'] });
    current().open();
    current().emit('connected', '{"clientId":"c1"}');
    current().emit('notification', '{"n":1}', '10');
    clock.advance(250);
    current().emit('notification', 'live only');
    const [connected, first, second] = client.events;
    assert.equal(connected.event, 'connected');
    assert.equal(connected.serverId, '');
    assert.deepEqual(
      { type: first.type, event: first.event, id: first.id, serverId: first.serverId, data: first.data },
      { type: 'notification', event: 'notification', id: '10', serverId: '10', data: { n: 1 } },
    );
    assert.equal(second.id, '10', 'the last event id carries over');
    assert.equal(second.serverId, '', 'but the event carried none');
    assert.equal(second.receivedAt - first.receivedAt, 250);
    assert.equal(client.clientId, 'c1');
    client.disconnect();
    assert.equal(client.clientId, '');
  });
});

describe('a url function', () => {
  it('reconnects itself with a fresh URL when the connection drops', () => {
    let n = 0;
    const { client, clock, sources, current, named } = setup({ url: () => `/api/sse?access_token=t${++n}` });
    current().open();
    current().emit('message', 'a', '5');
    const dropped = current();
    dropped.drop();
    assert.equal(dropped.closeCalls, 1, 'the browser does not retry with the old token');
    assert.equal(sources.length, 1);
    assert.equal(client.state, 'connecting');
    assert.equal(named('error')[0].kind, 'connection');
    assert.equal(client.reconnectAttempts, 1);
    assert.equal(clock.delays.at(-1), 2500, 'after the backoff');
    clock.runNext();
    assert.equal(current().url, '/api/sse?access_token=t2&lastEventId=5');
    current().open();
    assert.equal(client.reconnectAttempts, 0);
    client.disconnect();
  });

  it('waits for an async URL, and ignores one that arrives after disconnect()', async () => {
    const tokens = [];
    const { client, sources, current } = setup({
      url: () => new Promise((resolve) => tokens.push(resolve)),
    });
    assert.equal(sources.length, 0);
    assert.equal(client.state, 'connecting');
    client.connect();
    assert.equal(tokens.length, 1, 'connect() while the URL is coming does nothing');
    tokens[0]('/api/sse?access_token=a');
    await tick();
    assert.equal(current().url, '/api/sse?access_token=a');
    current().open();
    client.reconnect();
    assert.equal(tokens.length, 2);
    client.disconnect();
    tokens[1]('/api/sse?access_token=late');
    await tick();
    assert.equal(sources.length, 1, 'no EventSource after disconnect()');
    assert.equal(client.state, 'closed');
  });

  it('counts a failing url function as a failed attempt and retries', async () => {
    let fail = true;
    const { client, clock, current, named } = setup({
      url: async () => {
        if (fail) throw new Error('token service down');
        return '/api/sse?access_token=ok';
      },
    });
    await tick();
    assert.equal(named('error')[0].kind, 'url');
    assert.match(named('error')[0].message, /token service down/);
    assert.equal(client.reconnectAttempts, 1);
    fail = false;
    clock.runNext();
    await tick();
    assert.equal(current().url, '/api/sse?access_token=ok');
    client.disconnect();
  });

  it('refreshes once at once when refused before opening, then counts', () => {
    let n = 0;
    const { client, clock, sources, current, named } = setup({
      url: () => `/api/sse?access_token=t${++n}`,
      maxReconnectAttempts: 1,
    });
    current().open();
    current().drop(); // the token expired: the server ended the stream
    assert.equal(client.reconnectAttempts, 1);
    clock.runNext();
    current().fail(); // 401 with the token of the moment
    assert.equal(named('error').at(-1).kind, 'refused');
    assert.equal(named('error').at(-1).attempt, 0);
    assert.equal(client.reconnectAttempts, 1, 'not counted');
    assert.equal(clock.delays.at(-1), 0, 'at once');
    clock.runNext();
    assert.equal(current().url, '/api/sse?access_token=t3');
    current().open();
    assert.equal(client.state, 'connected', 'maxReconnectAttempts was not reached');
    assert.equal(client.reconnectAttempts, 0);

    // Refused twice in a row: the second counts.
    current().drop();
    clock.runNext();
    current().fail();
    clock.runNext();
    current().fail();
    assert.equal(client.state, 'closed');
    assert.equal(client.lastError.kind, 'gave-up');
    assert.equal(sources.length, 5);
  });

  it('leaves a string URL to the browser, refusals counted', () => {
    const { client, clock, current, named } = setup({ maxReconnectAttempts: 1 });
    current().open();
    current().fail();
    assert.equal(named('error')[0].kind, 'closed');
    clock.runNext();
    current().fail();
    assert.equal(client.state, 'closed');
  });
});

describe('channels joined at runtime', () => {
  function channelSetup(options = {}) {
    const requests = [];
    const answers = [];
    const env = setup({
      channelRequest: (request) =>
        new Promise((resolve, reject) => {
          requests.push(request);
          answers.push({ resolve, reject });
        }),
      ...options,
    });
    return { ...env, requests, answers };
  }

  it('joins through channelRequest with the clientId, and names the channel in later URLs', async () => {
    const { client, clock, current, requests, answers } = channelSetup({ url: '/api/sse?channel=base' });
    current().open();
    current().emit('connected', '{"clientId":"c1","channels":["base"]}');
    let joined = false;
    const promise = client.joinChannel('news').then(() => {
      joined = true;
    });
    await tick();
    assert.deepEqual(
      requests.map(({ action, clientId, channel, url }) => [action, clientId, channel, url]),
      [['subscribe', 'c1', 'news', '/api/sse?channel=base']],
    );
    assert.equal(joined, false);
    answers[0].resolve();
    await promise;
    assert.deepEqual(client.channels, ['base', 'news']);

    // The connection drops: the client reconnects itself, with the channel.
    current().emit('message', 'm', '3');
    current().drop();
    assert.equal(current().closeCalls, 1, 'not left to the browser');
    clock.runNext();
    assert.equal(current().url, '/api/sse?channel=base&channel=news&lastEventId=3');
    current().open();
    current().emit('connected', '{"clientId":"c2","channels":["base","news"]}');
    await tick();
    assert.equal(requests.length, 1, 'nothing to request: the URL named it');
    assert.equal(await client.joinChannel('news'), undefined, 'already in it');

    client.leaveChannel('news');
    await tick();
    assert.deepEqual(requests.at(-1).action, 'unsubscribe');
    assert.equal(requests.at(-1).clientId, 'c2');
    answers.at(-1).resolve();
    await tick();
    assert.deepEqual(client.channels, ['base']);
    client.leaveChannel('base');
    await tick();
    assert.equal(requests.length, 2, 'the URL’s own channels stay');
    client.disconnect();
  });

  it('waits for a connection, and rejects when the server refuses', async () => {
    const { client, current, requests, answers } = channelSetup({ autoConnect: false });
    const outcome = client.joinChannel('secret').then(
      () => 'joined',
      (error) => error.message,
    );
    client.connect();
    current().open();
    current().emit('connected', '{"clientId":"c1","channels":[]}');
    await tick();
    assert.equal(requests.length, 1);
    answers[0].reject(new Error('subscribe "secret" answered 403'));
    assert.match(await outcome, /cannot join channel "secret": subscribe "secret" answered 403/);
    await tick();
    assert.equal(requests.length, 1, 'no retry');
    current().drop();
    assert.equal(current().closeCalls, 0, 'a refused channel is not named in URLs: the browser retries');
    client.disconnect();
  });

  it('POSTs to {stream}/subscribe by default', async (t) => {
    const calls = [];
    t.mock.method(globalThis, 'fetch', async (url, init) => {
      calls.push([url, init]);
      return { ok: true, status: 200 };
    });
    const { client, current } = setup({ url: '/api/sse?userId=alice' });
    current().open();
    current().emit('connected', '{"clientId":"c9","channels":[]}');
    await client.joinChannel('news');
    assert.equal(calls[0][0], '/api/sse/subscribe');
    assert.equal(calls[0][1].method, 'POST');
    assert.deepEqual(JSON.parse(calls[0][1].body), { clientId: 'c9', channel: 'news' });
    client.disconnect();
  });

  it('builds stream URLs without repeating a channel', () => {
    assert.equal(withStreamParams('/s'), '/s');
    assert.equal(withStreamParams('/s?channel=a', { channels: ['a', 'b', 'b'] }), '/s?channel=a&channel=b');
    assert.equal(withStreamParams('/s#f', { lastEventId: '9', channels: ['x y'] }), '/s?channel=x+y&lastEventId=9#f');
  });
});
