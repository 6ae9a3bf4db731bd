/**
 * The demo page the service serves at `/`: plain HTML and a module script on top of the hub client library
 * (`/hub-client/index.js`, the package's compiled `wsengine/hub-client`). No build step, no framework.
 *
 * A person signs in with a name (the page asks the development-only `POST /dev/token` for a token) or with a pasted
 * token alone, sees who is online (presence on {@link PRESENCE_TOPIC}), subscribes to topics or patterns (a refused
 * subscription is marked refused, with the hub's reason), publishes chat messages to concrete topics (a pattern is
 * refused in the page, and the typed text kept), watches messages arrive with their topic, sequence number, time and
 * sender — the hub's verified `from.user` when it gives one, else the name the sender put in the message, marked
 * unverified — and signs out. Missed messages are shown only when the hub reports a gap (a resume after a restart
 * that lost nothing says so). The controls are enabled only while signed in. Peer-supplied text is only ever set
 * with `textContent`. The layout wraps long messages and stacks on narrow screens.
 *
 * @module
 */

/** The topic every signed-in page subscribes to with `presence: true`, for the "Online" list. */
export const PRESENCE_TOPIC = 'demo.online';

/** The page. Its script is {@link DEMO_SCRIPT}, served at `/demo.js`. */
export const DEMO_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsengine hub demo</title>
<link rel="icon" href="data:,">
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2430; }
  header { display: flex; flex-wrap: wrap; align-items: center; gap: .4em 1em; padding: .6em 1em; background: #1d2430; color: #fff; }
  header h1 { font-size: 1.1em; margin: 0; flex: 1; white-space: nowrap; }
  #who { font-weight: 600; overflow-wrap: anywhere; }
  #state { padding: .15em .6em; border-radius: 1em; background: #777; font-size: .85em; }
  #state[data-state="open"] { background: #2e8540; }
  #state[data-state="connecting"], #state[data-state="reconnecting"] { background: #c47f00; }
  #state[data-state="closed"] { background: #a33; }
  header button { margin: 0; background: #51607a; }
  main { display: grid; grid-template-columns: minmax(0, 20em) minmax(0, 1fr); gap: 1em; padding: 1em; }
  main > div { min-width: 0; }
  section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .8em; margin-bottom: 1em; min-width: 0; }
  h2 { font-size: .95em; margin: 0 0 .5em; }
  label { display: block; font-size: .85em; color: #555; margin-top: .4em; }
  input, textarea, button { font: inherit; box-sizing: border-box; max-width: 100%; }
  input, textarea { width: 100%; padding: .3em .4em; border: 1px solid #c5cbd3; border-radius: 4px; }
  button { margin-top: .5em; padding: .3em .9em; border: 0; border-radius: 4px; background: #2f5fb3; color: #fff; cursor: pointer; }
  button:disabled { background: #9aa6b8; cursor: default; }
  .or { text-align: center; color: #888; font-size: .85em; margin: .6em 0 0; }
  .error { color: #a33; font-size: .85em; margin: .4em 0 0; overflow-wrap: anywhere; }
  .error:empty { display: none; }
  [hidden] { display: none !important; }
  ul.plain { list-style: none; margin: .5em 0 0; padding: 0; }
  ul.plain li { display: flex; align-items: baseline; gap: .5em; padding: .15em 0; overflow-wrap: anywhere; }
  ul.plain li button { margin: 0 0 0 auto; padding: 0 .5em; background: #a33; flex: none; }
  #subscriptions .status { font-size: .8em; color: #777; }
  #subscriptions li[data-state="active"] .status { color: #2e8540; }
  #subscriptions li[data-state="refused"] { color: #a33; }
  #subscriptions li[data-state="refused"] .topic { text-decoration: line-through; }
  #subscriptions li[data-state="refused"] .status { color: #a33; }
  #online li::before { content: "●"; color: #2e8540; font-size: .8em; }
  #online li[data-self="true"] .you { color: #777; font-size: .85em; }
  #messages { list-style: none; margin: 0; padding: 0; max-height: 70vh; overflow-y: auto; overflow-x: hidden; font-family: ui-monospace, monospace; font-size: .9em; }
  #messages li { padding: .25em .4em; border-bottom: 1px solid #eef0f3; display: grid; grid-template-columns: 7em minmax(0, 10em) 4em minmax(0, 1fr); gap: .6em; }
  #messages .topic { color: #2f5fb3; overflow-wrap: anywhere; } #messages .seq { color: #888; text-align: right; } #messages .time { color: #888; }
  #messages .body { min-width: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
  #messages .sender { font-weight: 600; }
  #messages .sender.verified::after { content: " \\2713"; color: #2e8540; font-weight: normal; }
  #messages .sender.unverified { font-weight: normal; font-style: italic; }
  #messages li.gap { display: block; color: #a33; background: #fdf1f1; font-family: system-ui, sans-serif; }
  #log { font-family: ui-monospace, monospace; font-size: .8em; color: #555; max-height: 12em; overflow-y: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
  .hint { font-size: .85em; color: #666; }
  @media (max-width: 720px) {
    main { grid-template-columns: minmax(0, 1fr); padding: .5em; gap: .5em; }
    section { margin-bottom: .5em; }
    #messages { max-height: none; }
    #messages li { grid-template-columns: auto minmax(0, 1fr) auto; gap: .2em .6em; }
    #messages .body { grid-column: 1 / -1; }
    header h1 { flex-basis: 100%; }
  }
</style>
</head>
<body>
<header><h1>wsengine hub demo</h1><span id="who"></span><span id="state" data-state="closed">signed out</span><button id="signout" type="button" hidden>Sign out</button></header>
<main>
<div>
  <section id="signin-box">
    <h2>Sign in</h2>
    <form id="name-form">
      <label for="name">Your name (development mode: the service hands out a token)</label>
      <input id="name" autocomplete="off" maxlength="32" placeholder="alice" required pattern="[A-Za-z0-9_.\\-]{1,32}">
      <button id="signin" type="submit">Sign in</button>
    </form>
    <p class="or">or</p>
    <form id="token-form">
      <label for="token">Paste a token (a JWT the service accepts)</label>
      <textarea id="token" rows="3" placeholder="eyJ…" required></textarea>
      <button id="token-signin" type="submit">Sign in with this token</button>
    </form>
    <p id="signin-error" class="error" role="alert"></p>
  </section>
  <section id="online-box" hidden>
    <h2>Online</h2>
    <ul id="online" class="plain"></ul>
  </section>
  <section>
    <h2>Subscriptions</h2>
    <form id="subscribe-form">
      <label for="pattern">Topic or pattern (<code>*</code> one segment, <code>#</code> any)</label>
      <input id="pattern" value="chat.#" autocomplete="off">
      <button id="subscribe" type="submit" disabled>Subscribe</button>
    </form>
    <p id="subscribe-error" class="error" role="alert"></p>
    <ul id="subscriptions" class="plain"></ul>
  </section>
  <section>
    <h2>Publish</h2>
    <form id="publish-form">
      <label for="topic">Topic (a concrete one: <code>chat.lobby</code>, not a pattern)</label>
      <input id="topic" value="chat.lobby" autocomplete="off">
      <label for="text">Message</label>
      <input id="text" autocomplete="off" placeholder="hello">
      <button id="publish" type="submit" disabled>Publish</button>
    </form>
    <p id="publish-error" class="error" role="alert"></p>
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

const PRESENCE_TOPIC = ${JSON.stringify(PRESENCE_TOPIC)};
const $ = (id) => document.getElementById(id);
const wsUrl = location.origin.replace(/^http/, 'ws') + '/ws';
/** The current client (null when signed out); events of an earlier one are ignored. */
let client = null;
/** The user the token names (its sub), shown in the header and sent as the fallback sender. */
let user = '';
let token = '';
/** True once the hub accepted the token (the presence subscription was acknowledged), until the client stops. */
let signedIn = false;
/** Subscriptions as the page shows them: topic → { state: 'pending' | 'active' | 'refused', reason }. */
const subs = new Map();
/** Who is online on PRESENCE_TOPIC. */
const online = new Set();

function log(text) {
  const line = document.createElement('div');
  line.textContent = new Date().toLocaleTimeString() + '  ' + text;
  $('log').prepend(line);
}

function isPattern(topic) {
  return topic.split('.').some((s) => s === '*' || s === '#');
}

/** The sub claim of a JWT (not verified here: the hub verifies it), or ''. */
function tokenUser(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const payload = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return typeof payload.sub === 'string' ? payload.sub : '';
  } catch {
    return '';
  }
}

async function fetchToken(forName) {
  const res = await fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: forName }) });
  if (!res.ok) throw new Error(res.status === 404 ? 'no development token endpoint: the service runs without --dev; paste a token instead' : 'token request failed: ' + res.status);
  return (await res.json()).token;
}

function updateControls() {
  const usable = signedIn && client !== null && client.state !== 'closed';
  for (const id of ['subscribe', 'publish']) $(id).disabled = !usable;
  $('signin-box').hidden = signedIn;
  $('online-box').hidden = !signedIn;
  $('signout').hidden = client === null;
  $('who').textContent = client === null ? '' : user;
}

function showState(state) {
  $('state').dataset.state = state;
  $('state').textContent = client === null ? 'signed out' : state;
  updateControls();
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
  // The hub's verified sender when it gives one; else the name the sender wrote into the message (unverified).
  const verified = m.from && typeof m.from.user === 'string' ? m.from.user : undefined;
  const claimed = d && typeof d === 'object' && typeof d.from === 'string' ? d.from : undefined;
  const sender = verified ?? claimed;
  li.dataset.sender = sender ?? '';
  li.dataset.verified = String(verified !== undefined);
  if (sender !== undefined) {
    const who = document.createElement('span');
    who.className = 'sender ' + (verified !== undefined ? 'verified' : 'unverified');
    who.title = verified !== undefined ? 'sender verified by the hub' : 'name given by the sender, not verified';
    who.textContent = sender;
    body.append(who, ': ');
  }
  body.append(d && typeof d === 'object' && typeof d.text === 'string' ? d.text : m.type + ' ' + JSON.stringify(d));
  li.append(time, topic, seq, body);
  $('messages').append(li);
  $('messages').scrollTop = $('messages').scrollHeight;
}

/** A reported gap: messages the hub could not deliver or replay. */
function addGap(g) {
  const li = document.createElement('li');
  li.className = 'gap';
  li.dataset.topic = g.topic;
  const text = g.to === Infinity
    ? g.topic + ': messages after #' + (g.from - 1) + ' of its earlier history may be lost (the hub lost that history)'
    : g.topic + ': ' + (g.to - g.from + 1) + ' message' + (g.to === g.from ? '' : 's') + ' lost (#' + g.from + (g.to === g.from ? '' : '–#' + g.to) + ', no longer held by the hub)';
  li.textContent = text;
  $('messages').append(li);
  log('missed ' + text);
}

function renderSubscriptions() {
  const ul = $('subscriptions');
  ul.replaceChildren();
  for (const [topic, s] of subs) {
    const li = document.createElement('li');
    li.dataset.topic = topic;
    li.dataset.state = s.state;
    const label = document.createElement('span');
    label.className = 'topic';
    label.textContent = topic;
    const status = document.createElement('span');
    status.className = 'status';
    status.textContent = s.state === 'refused' ? 'refused: ' + s.reason : s.state === 'pending' ? 'waiting for the hub…' : 'active';
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = '×';
    button.title = s.state === 'refused' ? 'dismiss' : 'unsubscribe';
    button.onclick = () => {
      subs.delete(topic);
      renderSubscriptions();
      if (s.state !== 'refused' && client) client.unsubscribe(topic).catch((e) => log('unsubscribe failed: ' + e.message));
    };
    li.append(label, status, button);
    ul.append(li);
  }
}

function renderOnline() {
  const ul = $('online');
  ul.replaceChildren();
  for (const name of [...online].sort()) {
    const li = document.createElement('li');
    li.dataset.user = name;
    li.dataset.self = String(name === user);
    const label = document.createElement('span');
    label.textContent = name;
    li.append(label);
    if (name === user) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = '(you)';
      li.append(you);
    }
    ul.append(li);
  }
}

function refreshOnline(c) {
  c.request('presence', { topic: PRESENCE_TOPIC }).then((d) => {
    if (c !== client) return;
    online.clear();
    for (const name of Object.keys(d.users ?? {})) online.add(name);
    renderOnline();
  }, (e) => log('presence failed: ' + e.message));
}

/** Back to the signed-out page (after a sign-out, or when the client stopped). */
function reset() {
  signedIn = false;
  subs.clear();
  online.clear();
  renderSubscriptions();
  renderOnline();
}

function signIn(newToken, how) {
  if (client) client.close();
  reset();
  token = newToken;
  user = tokenUser(newToken) || (how === 'name' ? $('name').value.trim() : 'token user');
  $('signin-error').textContent = '';
  const c = new HubClient({
    url: wsUrl,
    token: () => token,
    onTokenExpired: async () => {
      if (how === 'paste') return null;
      log('token refused: asking for a new one');
      token = await fetchToken(user);
      return token;
    },
    backoff: { initialDelay: 250, maxDelay: 5000 },
  });
  client = c;
  const mine = (f) => (...args) => { if (c === client) f(...args); };
  c.on('state', mine((state) => {
    log('state: ' + state);
    if (state === 'closed' && signedIn) {
      // The client stopped for good (token refused or expired, too many connections, …): sign in again.
      signedIn = false;
      $('signin-error').textContent = 'Disconnected for good (see the connection log): sign in again.';
    }
    showState(state);
  }));
  c.on('message', mine((m) => {
    if (m.topic === undefined && (m.type === 'join' || m.type === 'leave') && m.data && m.data.topic === PRESENCE_TOPIC) {
      if (m.type === 'join') online.add(m.data.user);
      else online.delete(m.data.user);
      log(m.data.user + (m.type === 'join' ? ' joined' : ' left'));
      renderOnline();
      return;
    }
    if (m.topic === PRESENCE_TOPIC) return;
    addMessage(m);
  }));
  c.on('gap', mine((g) => addGap(g)));
  c.on('subscribed', mine((r) => {
    if (r.topic === PRESENCE_TOPIC) {
      refreshOnline(c);
      return;
    }
    const s = subs.get(r.topic);
    if (s) s.state = 'active';
    renderSubscriptions();
    // Only a reported gap means messages are missing: a resume after a restart that lost nothing says
    // recovered: false (the hub's history started over) without any gap.
    if (!r.resubscribed) log('subscribed ' + r.topic);
    else log('subscribed ' + r.topic + ' again, ' + (r.gaps.length === 0 ? 'nothing missing' : r.gaps.length + ' gap' + (r.gaps.length === 1 ? '' : 's') + ' reported'));
  }));
  c.on('disconnect', mine((info) => log('closed ' + info.code + (info.reason ? ' ' + info.reason : '') + ' → ' + info.action + (info.delay !== undefined ? ' in ' + Math.round(info.delay) + ' ms' : ''))));
  c.on('error', mine((e) => log('error: ' + e.message)));
  showState(c.state);
  c.connect().catch(() => {});
  c.subscribe(PRESENCE_TOPIC, { presence: true }).then(mine(() => {
    signedIn = true;
    log('signed in as ' + user);
    updateControls();
  }), mine((e) => {
    const refused = e.code === 'unauthorized' || /4401|token/.test(e.message);
    $('signin-error').textContent = refused ? 'The hub refused this token (expired, or not signed with its secret). Sign in again.' : 'Could not sign in: ' + e.message;
    log('sign-in failed: ' + e.message);
    client = null;
    c.close();
    reset();
    showState('closed');
  }));
}

$('name-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const wanted = $('name').value.trim();
  let fresh;
  try {
    fresh = await fetchToken(wanted);
  } catch (e) {
    $('signin-error').textContent = e.message;
    log(e.message);
    return;
  }
  signIn(fresh, 'name');
});

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const pasted = $('token').value.trim();
  if (!pasted) return;
  signIn(pasted, 'paste');
});

$('signout').addEventListener('click', () => {
  const c = client;
  client = null;
  if (c) c.close();
  reset();
  log('signed out');
  $('messages').replaceChildren();
  $('token').value = '';
  showState('closed');
});

$('subscribe-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const topic = $('pattern').value.trim();
  $('subscribe-error').textContent = '';
  if (!client || !signedIn || !topic) return;
  const c = client;
  const held = subs.get(topic);
  if (held && held.state !== 'refused') return;
  subs.set(topic, { state: 'pending' });
  renderSubscriptions();
  let promise;
  try {
    promise = c.subscribe(topic);
  } catch (e) {
    promise = Promise.reject(e);
  }
  promise.then(() => {
    if (c !== client) return;
    const s = subs.get(topic);
    if (s) s.state = 'active';
    renderSubscriptions();
  }, (e) => {
    if (c !== client || !subs.has(topic)) return;
    subs.set(topic, { state: 'refused', reason: e.message });
    renderSubscriptions();
    $('subscribe-error').textContent = 'The hub refused ' + topic + ': ' + e.message;
    log('subscribe ' + topic + ' refused: ' + e.message);
  });
});

$('publish-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const topic = $('topic').value.trim();
  const text = $('text').value;
  $('publish-error').textContent = '';
  if (!client || !signedIn || !text) return;
  if (!topic) {
    $('publish-error').textContent = 'Give a topic to publish to, e.g. chat.lobby.';
    return;
  }
  if (isPattern(topic)) {
    // Kept in the box: nothing was sent.
    $('publish-error').textContent = topic + ' is a pattern: patterns are for subscribing. Publish to a concrete topic, e.g. ' + topic.split('.').filter((s) => s !== '*' && s !== '#').concat('lobby').slice(0, 2).join('.') + '.';
    return;
  }
  let promise;
  try {
    promise = client.publish({ topic, type: 'chat', data: { from: user, text } });
  } catch (e) {
    $('publish-error').textContent = 'Not sent: ' + e.message;
    return;
  }
  $('text').value = '';
  promise.catch((e) => {
    $('publish-error').textContent = 'Not sent: ' + e.message;
    if (!$('text').value) $('text').value = text;
    log('publish failed: ' + e.message);
  });
});

updateControls();
`;
