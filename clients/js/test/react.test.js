// The useSSE hook, rendered with react-dom in a happy-dom document.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Window } from 'happy-dom';

import { FakeClock, fakeEventSource } from './fakes.js';

let window;
let React;
let act;
let createRoot;
let useSSE;
let useSSEEvents;
let SSEClient;

before(async () => {
  window = new Window({ url: 'http://127.0.0.1/' });
  globalThis.window = window;
  globalThis.document = window.document;
  if (typeof globalThis.navigator === 'undefined') {
    Object.defineProperty(globalThis, 'navigator', { value: window.navigator, configurable: true });
  }
  globalThis.IS_REACT_ACT_ENVIRONMENT = true;
  React = await import('react');
  act = React.act;
  ({ createRoot } = await import('react-dom/client'));
  ({ useSSE, useSSEEvents } = await import('../react.js'));
  ({ SSEClient } = await import('../sse-client.js'));
});

after(async () => {
  await window.happyDOM.close();
  delete globalThis.window;
  delete globalThis.document;
  if (globalThis.navigator === window.navigator) delete globalThis.navigator;
});

const h = (...args) => React.createElement(...args);

/** A page that shows what the hook returns, and keeps its last result. */
function mount(options, { strict = false } = {}) {
  const results = [];
  function Feed(props) {
    const sse = useSSE(props.options);
    results.push(sse);
    return h(
      'div',
      null,
      h('p', { id: 'state' }, sse.isConnected ? 'connected' : sse.isConnecting ? 'connecting' : 'closed'),
      h('p', { id: 'error' }, sse.error ? sse.error.kind : ''),
      h('p', { id: 'last' }, sse.lastEvent ? sse.lastEvent.raw : ''),
      h(
        'ul',
        { id: 'events' },
        sse.events.map((event, i) => h('li', { key: i, 'data-type': event.type }, event.raw)),
      ),
    );
  }
  const container = document.createElement('div');
  document.body.appendChild(container);
  const root = createRoot(container);
  const render = (next) =>
    act(() => {
      const element = h(Feed, { options: next });
      root.render(strict ? h(React.StrictMode, null, element) : element);
    });
  const text = (id) => container.querySelector(`#${id}`)?.textContent;
  const items = () => [...container.querySelectorAll('#events li')].map((li) => [li.dataset.type, li.textContent]);
  return {
    render,
    root,
    text,
    items,
    results,
    latest: () => results.at(-1),
    unmount: () => act(() => root.unmount()),
  };
}

function fakes() {
  const EventSource = fakeEventSource();
  const clock = new FakeClock();
  const sources = EventSource.instances;
  return { EventSource, clock, sources, current: () => sources.at(-1) };
}

describe('useSSE', () => {
  it('connects after mounting, renders events as they come, and cleans up on unmount', async () => {
    const { EventSource, clock, sources, current } = fakes();
    const seen = [];
    const options = {
      url: '/api/sse?userId=alice',
      EventSource,
      clock,
      eventHandlers: { notification: (event) => seen.push(event.data) },
    };
    const page = mount(options);
    await page.render(options);
    assert.equal(sources.length, 1);
    assert.equal(current().url, '/api/sse?userId=alice');
    assert.equal(page.text('state'), 'connecting');

    await act(() => current().open());
    assert.equal(page.text('state'), 'connected');
    assert.equal(page.latest().isConnected, true);

    await act(() => {
      current().emit('connected', '{"clientId":"c1"}');
      current().emit('notification', '{"title":"hello"}', '1');
    });
    assert.deepEqual(page.items(), [
      ['connected', '{"clientId":"c1"}'],
      ['notification', '{"title":"hello"}'],
    ]);
    assert.equal(page.text('last'), '{"title":"hello"}');
    assert.deepEqual(seen, [{ title: 'hello' }]);
    assert.equal(page.latest().lastEventId, '1');

    await act(() => current().fail());
    assert.equal(page.text('state'), 'connecting');
    assert.equal(page.text('error'), 'closed');
    assert.equal(clock.pending, 1, 'a reconnection is scheduled');

    const source = current();
    await page.unmount();
    assert.equal(clock.pending, 0, 'no timer survives the unmount');
    assert.equal(sources.length, 1);
    assert.equal(source.readyState, 2);
    assert.deepEqual(source.listenedTypes, []);
  });

  it('calls the handlers and callbacks of the latest render', async () => {
    const { EventSource, clock, current } = fakes();
    const seen = [];
    const options = (tag) => ({
      url: '/api/sse',
      EventSource,
      clock,
      eventHandlers: { update: (event) => seen.push(`${tag} ${event.data}`) },
      onReset: () => seen.push(`${tag} reset`),
    });
    const page = mount();
    await page.render(options('first'));
    await act(() => current().open());
    await act(() => current().emit('update', 'a'));
    await page.render(options('second'));
    await act(() => {
      current().emit('update', 'b');
      current().emit('reset', '{}', '9');
    });
    assert.deepEqual(seen, ['first a', 'second b', 'second reset']);
    await page.render({ ...options('third'), eventHandlers: { other: (event) => seen.push(`other ${event.data}`) } });
    await act(() => {
      current().emit('update', 'unheard');
      current().emit('other', 'c');
    });
    assert.deepEqual(seen, ['first a', 'second b', 'second reset', 'other c']);
    assert.ok(!current().listenedTypes.includes('update'), 'a removed handler stops listening');
    await page.unmount();
  });

  it('waits for connect() with autoConnect: false, and offers disconnect and clearEvents', async () => {
    const { EventSource, clock, sources, current } = fakes();
    const page = mount();
    const options = { url: '/s', EventSource, clock, autoConnect: false };
    await page.render(options);
    assert.equal(sources.length, 0);
    assert.equal(page.text('state'), 'closed');
    await act(() => page.latest().connect());
    await act(() => {
      current().open();
      current().emit('message', 'x', '3');
    });
    assert.equal(page.items().length, 1);
    await act(() => page.latest().clearEvents());
    assert.equal(page.items().length, 0);
    await act(() => page.latest().disconnect());
    assert.equal(page.text('state'), 'closed');
    await act(() => page.latest().connect());
    assert.equal(current().url, '/s?lastEventId=3', 'connect() after disconnect() resumes');
    const { connect, disconnect, clearEvents } = page.latest();
    await page.render(options);
    assert.equal(page.latest().connect, connect, 'stable functions');
    assert.equal(page.latest().disconnect, disconnect);
    assert.equal(page.latest().clearEvents, clearEvents);
    await page.unmount();
    assert.equal(current().readyState, 2);
  });

  it('opens a new connection for a new URL', async () => {
    const { EventSource, clock, sources, current } = fakes();
    const page = mount();
    await page.render({ url: '/api/sse?userId=alice', EventSource, clock });
    await act(() => current().open());
    await page.render({ url: '/api/sse?userId=alice', EventSource, clock });
    assert.equal(sources.length, 1, 'the same URL keeps the connection');
    await page.render({ url: '/api/sse?userId=bob', EventSource, clock });
    assert.equal(sources.length, 2);
    assert.equal(sources[0].readyState, 2, 'the old one is closed');
    assert.equal(current().url, '/api/sse?userId=bob');
    await page.unmount();
    assert.equal(current().readyState, 2);
    assert.equal(clock.pending, 0);
  });

  it('works under StrictMode, ending with one open connection', async () => {
    const { EventSource, clock, sources, current } = fakes();
    const page = mount(undefined, { strict: true });
    await page.render({ url: '/s', EventSource, clock });
    const open = sources.filter((s) => s.readyState !== 2);
    assert.equal(open.length, 1, 'mount, unmount and mount again leave one');
    await act(() => current().open());
    await act(() => current().emit('message', 'hi'));
    assert.deepEqual(page.items(), [['message', 'hi']]);
    await page.unmount();
    assert.ok(sources.every((s) => s.readyState === 2));
    assert.equal(clock.pending, 0);
  });
});

/** Renders `useHook(props)` and keeps every result. */
function mountHook(useHook) {
  const results = [];
  function Probe(props) {
    results.push(useHook(props));
    return null;
  }
  const container = document.createElement('div');
  document.body.appendChild(container);
  const root = createRoot(container);
  return {
    results,
    render: (props) => act(() => root.render(h(Probe, props))),
    unmount: () => act(() => root.unmount()),
  };
}

describe('useSSE: reconnect and the default URL', () => {
  it('connects to /api/sse without options and reconnects on demand', async () => {
    const { EventSource, clock, sources, current } = fakes();
    globalThis.EventSource = EventSource;
    try {
      const page = mountHook(() => useSSE({ clock }));
      await page.render({});
      assert.equal(current().url, '/api/sse');
      await act(() => {
        current().open();
        current().emit('message', 'x', '4');
      });
      await act(() => page.results.at(-1).reconnect());
      assert.equal(sources.length, 2);
      assert.equal(sources[0].readyState, 2);
      assert.equal(current().url, '/api/sse?lastEventId=4');
      await page.unmount();
      assert.equal(current().readyState, 2);
    } finally {
      delete globalThis.EventSource;
    }
  });
});

describe('useSSEEvents', () => {
  it('handles several named events with one connection, with the latest handlers', async () => {
    const { EventSource, clock, sources, current } = fakes();
    const seen = [];
    const page = mountHook(({ tag }) =>
      useSSEEvents(
        {
          stats: (data, event) => seen.push([tag, 'stats', data.connections, event.event]),
          alert: (data) => seen.push([tag, 'alert', data]),
        },
        { url: '/api/sse?channel=ops', EventSource, clock },
      ),
    );
    await page.render({ tag: 'a' });
    assert.equal(sources.length, 1, 'one connection');
    assert.ok(current().listenedTypes.includes('stats') && current().listenedTypes.includes('alert'));
    await act(() => {
      current().open();
      current().emit('stats', '{"connections":3}', '1');
    });
    await page.render({ tag: 'b' });
    await act(() => current().emit('alert', 'disk full', '2'));
    assert.deepEqual(seen, [
      ['a', 'stats', 3, 'stats'],
      ['b', 'alert', 'disk full'],
    ]);
    assert.equal(page.results.at(-1).isConnected, true);
    assert.equal(sources.length, 1);
    await page.unmount();
    assert.equal(current().readyState, 2);
  });

  it('listens on a client of your own without connecting or closing it', async () => {
    const { EventSource, clock, current } = fakes();
    const client = new SSEClient({ url: '/s', EventSource, clock, autoConnect: false });
    const seen = [];
    const page = mountHook(() => useSSEEvents({ ping: (data) => seen.push(data) }, { client }));
    await page.render({});
    assert.equal(client.state, 'closed', 'not connected by the hook');
    client.connect();
    await act(() => {
      current().open();
      current().emit('ping', '1');
    });
    assert.deepEqual(seen, [1]);
    assert.equal(page.results.at(-1).client, client);
    await page.unmount();
    assert.equal(client.state, 'connected', 'not closed by the hook');
    assert.ok(!current().listenedTypes.includes('ping'), 'its listener is gone');
    client.disconnect();
  });
});
