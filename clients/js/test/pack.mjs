// The package as people install it: `npm pack`, the tarball installed into a
// new project with TypeScript, React and the `eventsource` package from the
// npm registry, an ESM import of the root and of `/react` type-checked
// against the package's .d.ts files, then a Node script that streams from a
// running demo server with the installed client.
//
//   npm run test:pack                          # starts axum-demo with cargo
//   npm run test:pack -- http://127.0.0.1:3000 # or SSE_DEMO_URL: a demo already running
//
// Node has no EventSource of its own: the script hands the client the one of
// the `eventsource` package through its `EventSource` option.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const packageDir = resolve(here, '..');
const repo = resolve(packageDir, '../..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function run(command, args, cwd) {
  console.log(`$ ${command} ${args.join(' ')}   (in ${cwd})`);
  execFileSync(command, args, { cwd, stdio: 'inherit' });
}

/** Starts axum-demo on a free port with cargo; resolves to its URL and the process. */
function startDemo() {
  return new Promise((resolveStart, reject) => {
    // The demo's defaults, whatever the caller's environment says.
    const env = { ...process.env };
    for (const name of Object.keys(env)) if (name.startsWith('SSE_')) delete env[name];
    env.SSE_ADDR = '127.0.0.1:0';
    const child = spawn('cargo', ['run', '--quiet', '-p', 'sse-examples', '--bin', 'axum-demo'], {
      cwd: repo,
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const timer = setTimeout(() => reject(new Error('axum-demo did not announce itself within 600 s')), 600_000);
    child.on('exit', (code) => reject(new Error(`axum-demo exited (${code}) before announcing itself`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /^listening on (http:\/\/\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolveStart({ url: match[1], child });
      }
    });
  });
}

const CHECK_TS = `// Compiles only if the installed declarations describe the API.
import { SSEClient, SSEError, type SSEEvent, type SSEClientOptions } from '@sse-rs/client';
import { useSSE, useSSEEvents, type UseSSEResult } from '@sse-rs/client/react';

interface AppEvents {
  notification: string;
  stats: { connections: number };
}

const options: SSEClientOptions<AppEvents> = {
  url: async () => '/api/sse?access_token=t',
  shareAcrossTabs: true,
  eventHandlers: { notification: (event: SSEEvent<string, 'notification'>) => void event.data.toUpperCase() },
};
const client = new SSEClient<AppEvents>(options);
client.reconnect();
const joined: Promise<void> = client.joinChannel('news');
const failure: SSEError | null = client.lastError;
function Panel(): UseSSEResult<AppEvents> {
  useSSEEvents<AppEvents>({ stats: (data) => void data.connections.toFixed() }, { client });
  return useSSE<AppEvents>();
}
void [joined, failure, Panel];
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    lib: ['ES2022', 'DOM'],
    strict: true,
    noEmit: true,
    skipLibCheck: false,
    types: [],
  },
  files: ['check.ts'],
};

// Streams from the demo with the installed client: an event to the user, a
// channel joined at runtime (through the default POST /api/sse/subscribe),
// and reconnect() resuming from the last event id.
const RUN_MJS = `import { EventSource } from 'eventsource';
import { SSEClient } from '@sse-rs/client';
import { useSSE, useSSEEvents } from '@sse-rs/client/react';

const base = process.argv[2];
if (typeof useSSE !== 'function' || typeof useSSEEvents !== 'function') throw new Error('the /react hooks are missing');
const deadline = setTimeout(() => {
  console.error('timed out; events:', JSON.stringify(client.events));
  process.exit(1);
}, 30_000);

const seen = [];
const client = new SSEClient({
  url: base + '/api/sse?userId=packer',
  EventSource,
  eventTypes: ['notification'],
  reconnectInterval: 200,
  onMessage: (event) => seen.push(event),
});

async function until(what, check) {
  for (;;) {
    if (check()) return;
    if (client.state === 'closed') throw new Error('closed while waiting for ' + what + ': ' + client.lastError?.message);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function publish(body) {
  const response = await fetch(base + '/api/sse/publish', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ event: 'notification', ...body }),
  });
  if (!response.ok) throw new Error('publish answered ' + response.status);
  return (await response.json()).id;
}

const times = (id) => seen.filter((event) => event.serverId === id).length;

await until('the connection', () => client.isConnected && client.clientId !== '');
const direct = await publish({ data: 'to the user', target: 'user', targetId: 'packer' });
await until('the event to the user', () => times(direct) === 1);
await client.joinChannel('pack-news');
const channel = await publish({ data: 'to the channel', target: 'channel', targetId: 'pack-news' });
await until('the channel event', () => times(channel) === 1);
const before = client.clientId;
client.reconnect();
await until('a new connection', () => client.isConnected && client.clientId !== '' && client.clientId !== before);
if (!client.eventSource.url.includes('channel=pack-news') || !client.eventSource.url.includes('lastEventId=' + channel)) {
  throw new Error('the new connection should name the channel and resume: ' + client.eventSource.url);
}
const again = await publish({ data: 'to the channel again', target: 'channel', targetId: 'pack-news' });
await until('the channel event after reconnect()', () => times(again) === 1);
const record = seen.find((event) => event.serverId === direct);
if (record.event !== 'notification' || record.data !== 'to the user' || typeof record.receivedAt !== 'number') {
  throw new Error('unexpected record: ' + JSON.stringify(record));
}
if (times(direct) !== 1 || times(channel) !== 1) throw new Error('an event arrived twice');
client.disconnect();
clearTimeout(deadline);
console.log('the installed client streamed', seen.length, 'events from', base);
`;

async function main() {
  let demo = process.argv[2] || process.env.SSE_DEMO_URL;
  let child = null;
  const work = mkdtempSync(join(tmpdir(), 'sse-client-pack-'));
  try {
    run(npm, ['pack', '--pack-destination', work], packageDir);
    const tarball = readdirSync(work).find((name) => name.endsWith('.tgz'));
    if (!tarball) throw new Error('npm pack made no tarball');
    const project = join(work, 'project');
    execFileSync('mkdir', [project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'pack-check', private: true, type: 'module' }, null, 2));
    run(
      npm,
      [
        'install',
        '--no-audit',
        '--no-fund',
        join(work, tarball),
        'typescript@5',
        'react@19',
        '@types/react@19',
        'eventsource@3',
      ],
      project,
    );
    writeFileSync(join(project, 'check.ts'), CHECK_TS);
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
    run(process.execPath, [join(project, 'node_modules/typescript/bin/tsc'), '-p', project], project);
    writeFileSync(join(project, 'run.mjs'), RUN_MJS);
    if (!demo) {
      const started = await startDemo();
      demo = started.url;
      child = started.child;
    }
    run(process.execPath, [join(project, 'run.mjs'), demo], project);
  } finally {
    if (child) {
      child.removeAllListeners('exit');
      child.kill('SIGTERM');
    }
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
