'use strict';
// The wsgate demo page: one real WebSocket per button, then what the server saw.

const $ = (id) => document.getElementById(id);
let cfg = { ws: `ws://${location.host}/ws`, token: '' };

// b64url is unpadded base64url of the UTF-8 bytes of s.
function b64url(s) {
  let bin = '';
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// Each way returns the URL and the protocol list for new WebSocket.
const ways = {
  subprotocol: (t) => [cfg.ws, ['chat', 'access_token', t]],
  prefix: (t) => [cfg.ws, ['chat', 'base64url.bearer.authorization.k8s.io.' + b64url(t)]],
  userinfo: (t) => { const u = new URL(cfg.ws); u.username = t; return [u.href, ['chat']]; },
  query: (t) => { const u = new URL(cfg.ws); u.searchParams.set('access_token', t); return [u.href, ['chat']]; },
  wrong: () => [cfg.ws, ['chat', 'access_token', 'wrong-' + b64url(String(Math.random()))]],
  none: () => [cfg.ws, ['chat']],
};

// card adds a result box for one attempt, newest first.
function card(title) {
  const box = document.createElement('div');
  box.className = 'card';
  const h = document.createElement('h3');
  h.textContent = title;
  const list = document.createElement('ul');
  box.append(h, list);
  $('results').prepend(box);
  return {
    line(text, cls) {
      const li = document.createElement('li');
      li.textContent = text;
      if (cls) li.className = cls;
      list.append(li);
    },
    pre(text) {
      const p = document.createElement('pre');
      p.textContent = text;
      box.append(p);
    },
  };
}

// connect opens one socket, reads the hello, does one round trip, closes,
// and shows /last. It resolves when all that is done.
function connect(c, url, protocols) {
  return new Promise((resolve) => {
    let ws;
    try {
      ws = new WebSocket(url, protocols);
    } catch (e) {
      c.line('the constructor threw: ' + e.message, 'bad');
      resolve();
      return;
    }
    let opened = false, got = 0, sentAt = 0;
    ws.onopen = () => {
      opened = true;
      c.line(`open; ws.protocol = "${ws.protocol}"`, 'ok');
    };
    ws.onmessage = (ev) => {
      if (got++ === 0) {
        const h = JSON.parse(ev.data);
        c.line(`hello: principal ${JSON.stringify(h.principal)}, source "${h.source}", protocol "${h.protocol}"`, 'ok');
        sentAt = performance.now();
        ws.send('ping ' + new Date().toISOString());
        return;
      }
      c.line(`echo "${ev.data}" after ${(performance.now() - sentAt).toFixed(1)} ms`, 'ok');
      ws.close(1000, 'done');
    };
    ws.onerror = () => c.line('error event (the HTTP status is hidden from the page: see /last below)', 'bad');
    ws.onclose = async (ev) => {
      c.line(`close ${ev.code}${ev.reason ? ' "' + ev.reason + '"' : ''}, wasClean ${ev.wasClean}`, opened ? 'ok' : 'bad');
      await showLast(c);
      resolve();
    };
  });
}

async function showLast(c) {
  try {
    const res = await fetch('/last');
    c.pre('/last: ' + (res.ok ? JSON.stringify(await res.json(), null, 2) : res.status + ' ' + await res.text()));
  } catch (e) {
    c.pre('/last: ' + e.message);
  }
}

async function viaCookie(ev) {
  ev.preventDefault();
  const c = card('cookie');
  const res = await fetch('/login', { method: 'POST', body: new URLSearchParams({ token: $('token').value }) });
  c.line(`POST /login: ${res.status}`, res.ok ? 'ok' : 'bad');
  await connect(c, cfg.ws, ['chat']);
  const out = await fetch('/logout', { method: 'POST' });
  c.line(`POST /logout: ${out.status}`);
}

function goCommand() {
  const t = $('token').value || 'TOKEN';
  $('gocmd').textContent = `go run ./cmd/wsgate-client -url ${cfg.ws} -token ${t}`;
}

async function init() {
  const res = await fetch('/config');
  if (res.ok) {
    cfg = await res.json();
  } else {
    $('banner').textContent = `/config answered ${res.status}: type the token yourself.`;
    $('banner').style.display = 'block';
  }
  $('token').value = cfg.token;
  $('wsurl').textContent = cfg.ws;
  if (cfg.cross) {
    $('banner').textContent = `This page comes from another origin (${location.origin}) than the gate ` +
      `(${cfg.ws}). The gate's default same-origin policy refuses every attempt from here with 403, ` +
      'even with the right token; the cookie attempt shows why that matters: the browser sends the ' +
      'cookie of the other port along, and only the Origin check stops it.';
    $('banner').style.display = 'block';
  }
  if (cfg.other) {
    const a = document.createElement('a');
    a.href = cfg.other;
    a.textContent = cfg.cross ? 'Back to the same-origin page.' : 'Try the same from another origin.';
    $('other').append(a);
  }
  goCommand();
}

for (const b of document.querySelectorAll('button[data-way]')) {
  b.addEventListener('click', () => {
    const [url, protocols] = ways[b.dataset.way]($('token').value);
    connect(card(b.textContent), url, protocols);
  });
}
$('login').addEventListener('submit', viaCookie);
$('token').addEventListener('input', goCommand);
$('copy').addEventListener('click', () => navigator.clipboard.writeText($('gocmd').textContent));
init();
