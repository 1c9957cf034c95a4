// Unit tests of shareAcrossTabs: several clients in one process stand for
// tabs, with a fake BroadcastChannel, lock manager, EventSource and clock.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SSEClient } from '../sse-client.js';
import { FakeClock, fakeEventSource, fakeTabs } from './fakes.js';

/** `n` tabs sharing `/api/sse?userId=alice`; each records its events. */
function tabs(n, options = {}) {
  const EventSource = fakeEventSource();
  const clock = new FakeClock();
  const env = fakeTabs();
  const requests = [];
  const open = [];
  const make = (extra = {}) => {
    const seen = [];
    const client = new SSEClient({
      url: '/api/sse?userId=alice',
      shareAcrossTabs: true,
      EventSource,
      clock,
      random: () => 0.5,
      BroadcastChannel: env.BroadcastChannel,
      locks: env.locks,
      channelRequest: async (request) => {
        requests.push(request);
      },
      eventTypes: ['notification'],
      onMessage: (event) => seen.push(event),
      ...options,
      ...extra,
    });
    open.push(client);
    return { client, seen, ids: () => seen.filter((e) => e.serverId).map((e) => e.serverId) };
  };
  const all = Array.from({ length: n }, () => make());
  const sources = EventSource.instances;
  const live = () => sources.filter((s) => s.readyState !== 2);
  return { ...env, EventSource, clock, all, make, sources, live, requests, holder: () => open.find((c) => c.tabRole === 'holder') };
}

describe('shareAcrossTabs', () => {
  it('opens one EventSource for all tabs and passes every event to each once', async () => {
    const t = tabs(3);
    await t.settle();
    assert.equal(t.sources.length, 1, 'one connection');
    const holder = t.holder();
    assert.equal(holder, t.all[0].client, 'the first tab to ask holds it');
    assert.deepEqual(
      t.all.map(({ client }) => client.tabRole),
      ['holder', 'follower', 'follower'],
    );
    const source = t.sources[0];
    source.open();
    source.emit('connected', '{"clientId":"c1","channels":[]}');
    await t.settle();
    for (const { client } of t.all) {
      assert.equal(client.state, 'connected');
      assert.equal(client.clientId, 'c1');
    }
    source.emit('notification', '{"n":1}', '1');
    source.emit('notification', '{"n":2}', '2');
    await t.settle();
    for (const tab of t.all) {
      assert.deepEqual(tab.ids(), ['1', '2']);
      assert.deepEqual(tab.seen.at(-1).data, { n: 2 });
      assert.equal(tab.client.lastEventId, '2');
    }
    for (const { client } of t.all) client.disconnect();
  });

  it('listens on the shared connection to the names any tab listens to, delivering each only where asked', async () => {
    const t = tabs(2);
    await t.settle();
    const chat = [];
    t.all[1].client.on('chat', (event) => chat.push(event.data));
    await t.settle();
    assert.ok(t.sources[0].listenedTypes.includes('chat'));
    t.sources[0].open();
    t.sources[0].emit('chat', 'hi', '5');
    await t.settle();
    assert.deepEqual(chat, ['hi']);
    assert.equal(t.all[0].seen.length, 0, 'the holder does not listen to chat itself');
    assert.equal(t.all[0].client.lastEventId, '5', 'but resumes after it');
    for (const { client } of t.all) client.disconnect();
  });

  it('hands over when the holder leaves: the next tab resumes from the last id, no loss, no duplicate', async () => {
    const t = tabs(3);
    await t.settle();
    const first = t.sources[0];
    first.open();
    first.emit('notification', 'one', '1');
    first.emit('notification', 'two', '2');
    await t.settle();
    t.all[0].client.disconnect();
    await t.settle();
    assert.equal(t.all[1].client.tabRole, 'holder');
    assert.equal(t.live().length, 1);
    const second = t.sources[1];
    assert.equal(second.url, '/api/sse?userId=alice&lastEventId=2');
    second.open();
    // The server replays what followed id 2; the last event arrived twice.
    second.emit('notification', 'two', '2');
    second.emit('notification', 'three', '3');
    await t.settle();
    for (const tab of t.all.slice(1)) assert.deepEqual(tab.ids(), ['1', '2', '3']);
    assert.deepEqual(t.all[0].ids(), ['1', '2'], 'the tab that left hears nothing more');
    for (const { client } of t.all) client.disconnect();
  });

  it('hands over when the holding tab vanishes without a word', async () => {
    const t = tabs(2);
    await t.settle();
    t.sources[0].open();
    t.sources[0].emit('notification', 'one', '1');
    await t.settle();
    t.crash(t.all[0].client);
    await t.settle();
    assert.equal(t.all[1].client.tabRole, 'holder');
    assert.equal(t.sources[1].url, '/api/sse?userId=alice&lastEventId=1');
    t.sources[1].open();
    t.sources[1].emit('notification', 'two', '2');
    await t.settle();
    assert.deepEqual(t.all[1].ids(), ['1', '2']);
    t.all[1].client.disconnect();
  });

  it('a tab that joined a channel keeps it through a handover', async () => {
    const t = tabs(3);
    await t.settle();
    t.sources[0].open();
    t.sources[0].emit('connected', '{"clientId":"c1","channels":[]}');
    await t.settle();
    const joined = t.all[2].client.joinChannel('news');
    await t.settle();
    assert.deepEqual(
      t.requests.map(({ action, clientId, channel }) => [action, clientId, channel]),
      [['subscribe', 'c1', 'news']],
      'the holder joins it for the connection',
    );
    await joined;
    assert.deepEqual(t.all[2].client.channels, ['news']);
    assert.deepEqual(t.all[1].client.channels, ['news'], 'every tab shares the stream');
    t.sources[0].emit('notification', 'news 1', '1');
    await t.settle();

    t.all[0].client.disconnect();
    await t.settle();
    const next = t.sources[1];
    assert.equal(next.url, '/api/sse?userId=alice&channel=news&lastEventId=1', 'the new holder names it');
    next.open();
    next.emit('connected', '{"clientId":"c2","channels":["news"]}');
    next.emit('notification', 'news 2', '2');
    await t.settle();
    assert.equal(t.requests.length, 1);
    assert.deepEqual(t.all[2].ids(), ['1', '2']);

    // The tab that wanted it goes: the holder leaves the channel.
    t.all[2].client.disconnect();
    await t.settle();
    assert.deepEqual(
      t.requests.slice(1).map(({ action, clientId, channel }) => [action, clientId, channel]),
      [['unsubscribe', 'c2', 'news']],
    );
    for (const { client } of t.all) client.disconnect();
  });

  it('a tab opened later learns the state, the last id and the other tabs’ channels', async () => {
    const t = tabs(1);
    await t.settle();
    t.sources[0].open();
    t.sources[0].emit('connected', '{"clientId":"c1","channels":[]}');
    await t.all[0].client.joinChannel('ops');
    t.sources[0].emit('notification', 'x', '4');
    await t.settle();
    const late = t.make();
    await t.settle();
    assert.equal(late.client.state, 'connected');
    assert.equal(late.client.lastEventId, '4');
    assert.deepEqual(late.client.channels, ['ops']);
    late.client.disconnect();
    t.all[0].client.disconnect();
  });

  it('forwards reconnect() and a failure to the holder and back', async () => {
    const errors = [];
    const t = tabs(2, { maxReconnectAttempts: 0, onError: (error) => errors.push(error.kind) });
    await t.settle();
    t.sources[0].open();
    await t.settle();
    t.all[1].client.reconnect();
    await t.settle();
    assert.equal(t.sources.length, 2);
    assert.equal(t.sources[0].closeCalls, 1);
    t.sources[1].fail();
    await t.settle();
    assert.equal(t.all[1].client.state, 'connecting');
    assert.equal(t.all[1].client.lastError.kind, 'closed');
    assert.deepEqual(errors, ['closed', 'closed'], 'onError in both tabs');
    for (const { client } of t.all) client.disconnect();
    await t.settle();
    assert.deepEqual(t.locks.held, [], 'no lock left');
  });

  it('falls back to a connection per tab without Web Locks or BroadcastChannel', () => {
    const EventSource = fakeEventSource();
    const env = fakeTabs();
    const a = new SSEClient({ shareAcrossTabs: true, EventSource, BroadcastChannel: env.BroadcastChannel, locks: {} });
    const saved = globalThis.BroadcastChannel;
    delete globalThis.BroadcastChannel;
    let b;
    try {
      b = new SSEClient({ shareAcrossTabs: true, EventSource, locks: env.locks });
    } finally {
      globalThis.BroadcastChannel = saved;
    }
    assert.equal(a.tabRole, 'solo');
    assert.equal(b.tabRole, 'solo');
    assert.equal(EventSource.instances.length, 2);
    a.disconnect();
    b.disconnect();
  });

  it('is off by default', () => {
    const EventSource = fakeEventSource();
    const env = fakeTabs();
    const a = new SSEClient({ EventSource, BroadcastChannel: env.BroadcastChannel, locks: env.locks });
    assert.equal(a.tabRole, 'solo');
    assert.equal(env.locks.requests, 0);
    a.disconnect();
  });
});
