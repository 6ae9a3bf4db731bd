/**
 * The demo page the service serves at `/`: plain HTML and a module script on top of the hub client library
 * (`/hub-client/index.js`, the package's compiled `wsengine/hub-client`). No build step, no framework.
 *
 * A person signs in with a name (the page asks the development-only `POST /dev/token` for a token, or takes a pasted
 * token), subscribes to topics or patterns, publishes chat messages, and watches messages arrive with their topic,
 * sequence number and time. Peer-supplied text is only ever set with `textContent`.
 *
 * @module
 */

/** The page. Its script is {@link DEMO_SCRIPT}, served at `/demo.js`. */
export const DEMO_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsengine hub demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2430; }
  header { display: flex; align-items: center; gap: 1em; padding: .6em 1em; background: #1d2430; color: #fff; }
  header h1 { font-size: 1.1em; margin: 0; flex: 1; }
  #state { padding: .15em .6em; border-radius: 1em; background: #777; font-size: .85em; }
  #state[data-state="open"] { background: #2e8540; }
  #state[data-state="connecting"], #state[data-state="reconnecting"] { background: #c47f00; }
  #state[data-state="closed"] { background: #a33; }
  main { display: grid; grid-template-columns: 20em 1fr; gap: 1em; padding: 1em; }
  section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .8em; margin-bottom: 1em; }
  h2 { font-size: .95em; margin: 0 0 .5em; }
  label { display: block; font-size: .85em; color: #555; margin-top: .4em; }
  input, textarea, button { font: inherit; box-sizing: border-box; }
  input, textarea { width: 100%; padding: .3em .4em; border: 1px solid #c5cbd3; border-radius: 4px; }
  button { margin-top: .5em; padding: .3em .9em; border: 0; border-radius: 4px; background: #2f5fb3; color: #fff; cursor: pointer; }
  button:disabled { background: #9aa6b8; cursor: default; }
  #subscriptions li button { margin: 0 0 0 .5em; padding: 0 .5em; background: #a33; }
  #messages { list-style: none; margin: 0; padding: 0; max-height: 70vh; overflow-y: auto; font-family: ui-monospace, monospace; font-size: .9em; }
  #messages li { padding: .25em .4em; border-bottom: 1px solid #eef0f3; display: grid; grid-template-columns: 7em 10em 4em 1fr; gap: .6em; }
  #messages .topic { color: #2f5fb3; } #messages .seq { color: #888; text-align: right; } #messages .time { color: #888; }
  #log { font-family: ui-monospace, monospace; font-size: .8em; color: #555; max-height: 12em; overflow-y: auto; white-space: pre-wrap; }
  .hint { font-size: .85em; color: #666; }
</style>
</head>
<body>
<header><h1>wsengine hub demo</h1><span id="who"></span><span id="state" data-state="closed">signed out</span></header>
<main>
<div>
  <section id="signin-box">
    <h2>Sign in</h2>
    <form id="signin-form">
      <label for="name">Your name</label>
      <input id="name" autocomplete="off" maxlength="32" placeholder="alice" required pattern="[A-Za-z0-9_.\\-]{1,32}">
      <label for="token">or a token (when the service runs without --dev)</label>
      <textarea id="token" rows="2" placeholder="eyJ…"></textarea>
      <button id="signin" type="submit">Sign in</button>
    </form>
  </section>
  <section>
    <h2>Subscriptions</h2>
    <form id="subscribe-form">
      <label for="pattern">Topic or pattern (<code>*</code> one segment, <code>#</code> any)</label>
      <input id="pattern" value="chat.#" autocomplete="off">
      <button id="subscribe" type="submit" disabled>Subscribe</button>
    </form>
    <ul id="subscriptions"></ul>
  </section>
  <section>
    <h2>Publish</h2>
    <form id="publish-form">
      <label for="topic">Topic</label>
      <input id="topic" value="chat.lobby" autocomplete="off">
      <label for="text">Message</label>
      <input id="text" autocomplete="off" placeholder="hello">
      <button id="publish" type="submit" disabled>Publish</button>
    </form>
    <p class="hint">Open this page in a second tab to chat with the first. Restart the service: the page reconnects
      and resumes every subscription from the last message it saw.</p>
  </section>
</div>
<div>
  <section>
    <h2>Messages</h2>
    <ul id="messages"></ul>
  </section>
  <section>
    <h2>Connection log</h2>
    <div id="log"></div>
  </section>
</div>
</main>
<script type="module" src="/demo.js"></script>
</body>
</html>
`;

/** The page's script (plain ES module, loaded from `/demo.js`). */
export const DEMO_SCRIPT = `import { HubClient } from '/hub-client/index.js';

const $ = (id) => document.getElementById(id);
const wsUrl = location.origin.replace(/^http/, 'ws') + '/ws';
let client = null;
let name = '';
let token = '';

function log(text) {
  const line = document.createElement('div');
  line.textContent = new Date().toLocaleTimeString() + '  ' + text;
  $('log').prepend(line);
}

async function fetchToken(forName) {
  const res = await fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: forName }) });
  if (!res.ok) throw new Error(res.status === 404 ? 'no development token endpoint: start the service with --dev, or paste a token' : 'token request failed: ' + res.status);
  return (await res.json()).token;
}

function showState(state) {
  $('state').dataset.state = state;
  $('state').textContent = state;
  const usable = client !== null;
  $('subscribe').disabled = !usable;
  $('publish').disabled = !usable;
}

function addMessage(m) {
  const li = document.createElement('li');
  li.dataset.topic = m.topic ?? '';
  li.dataset.seq = m.seq ?? '';
  const time = document.createElement('span');
  time.className = 'time';
  time.textContent = new Date(m.ts ?? Date.now()).toLocaleTimeString();
  const topic = document.createElement('span');
  topic.className = 'topic';
  topic.textContent = m.topic ?? '(direct)';
  const seq = document.createElement('span');
  seq.className = 'seq';
  seq.textContent = m.seq === undefined ? '' : '#' + m.seq;
  const body = document.createElement('span');
  body.className = 'body';
  const d = m.data;
  body.textContent = d && typeof d === 'object' && typeof d.text === 'string'
    ? (typeof d.from === 'string' ? d.from + ': ' : '') + d.text
    : m.type + ' ' + JSON.stringify(d);
  li.append(time, topic, seq, body);
  $('messages').append(li);
  $('messages').scrollTop = $('messages').scrollHeight;
}

function renderSubscriptions() {
  const ul = $('subscriptions');
  ul.replaceChildren();
  for (const s of client ? client.subscriptions : []) {
    const li = document.createElement('li');
    const label = document.createElement('span');
    label.textContent = s.topic;
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = '×';
    button.title = 'unsubscribe';
    button.onclick = () => client.unsubscribe(s.topic).then(renderSubscriptions, (e) => log('unsubscribe failed: ' + e.message));
    li.append(label, button);
    ul.append(li);
  }
}

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const pasted = $('token').value.trim();
  const wanted = $('name').value.trim();
  try {
    token = pasted || (await fetchToken(wanted));
  } catch (e) {
    log(e.message);
    return;
  }
  name = wanted || 'someone';
  if (client) client.close();
  client = new HubClient({
    url: wsUrl,
    token: () => token,
    onTokenExpired: async () => {
      if (pasted) return null;
      log('token refused: asking for a new one');
      token = await fetchToken(name);
      return token;
    },
    backoff: { initialDelay: 250, maxDelay: 5000 },
  });
  client.on('state', (state) => { showState(state); log('state: ' + state); });
  client.on('message', (m) => { if (m.type !== 'pong') addMessage(m); });
  client.on('gap', (g) => log('missed ' + g.topic + ' #' + g.from + '-' + g.to + ' (no longer held)'));
  client.on('subscribed', (r) => {
    log('subscribed ' + r.topic + (r.resubscribed ? ' again, ' + (r.recovered ? 'nothing lost' : 'part lost') : ''));
    renderSubscriptions();
  });
  client.on('disconnect', (info) => log('closed ' + info.code + (info.reason ? ' ' + info.reason : '') + ' → ' + info.action + (info.delay !== undefined ? ' in ' + Math.round(info.delay) + ' ms' : '')));
  client.on('error', (e) => log('error: ' + e.message));
  $('who').textContent = name;
  showState(client.state);
  client.connect().catch((e) => log('could not connect: ' + e.message));
});

$('subscribe-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const topic = $('pattern').value.trim();
  if (!client || !topic) return;
  client.subscribe(topic).then(renderSubscriptions, (e) => log('subscribe ' + topic + ' failed: ' + e.message));
  renderSubscriptions();
});

$('publish-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const topic = $('topic').value.trim();
  const text = $('text').value;
  if (!client || !topic || !text) return;
  $('text').value = '';
  client.publish({ topic, type: 'chat', data: { from: name, text } }).catch((e) => log('publish failed: ' + e.message));
});
`;
