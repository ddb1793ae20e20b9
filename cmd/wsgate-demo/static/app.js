'use strict';
// The wsgate demo page: one real WebSocket per button, then what the server saw.

const $ = (id) => document.getElementById(id);
let cfg = { ws: `ws://${location.host}/ws`, wsClose: `ws://${location.host}/ws-close`, wsInband: `ws://${location.host}/ws-inband`, token: '' };

// b64url is unpadded base64url of the UTF-8 bytes of s.
function b64url(s) {
  let bin = '';
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// mask keeps the first 4 characters of a secret, as the server's /last does.
const mask = (v) => (v.length <= 8 ? '…' : v.slice(0, 4) + '…');

// closeFrames reports whether attempts go to the close-frame endpoint.
const closeFrames = () => $('closeframe').checked;
const endpoint = () => (closeFrames() ? cfg.wsClose : cfg.ws);

// Each way returns the URL and the protocol list for new WebSocket.
const ways = {
  subprotocol: (t) => [endpoint(), ['chat', 'access_token', t]],
  prefix: (t) => [endpoint(), ['chat', 'base64url.bearer.authorization.k8s.io.' + b64url(t)]],
  userinfo: (t) => { const u = new URL(endpoint()); u.username = t; return [u.href, ['chat']]; },
  query: (t) => { const u = new URL(endpoint()); u.searchParams.set('access_token', t); return [u.href, ['chat']]; },
  wrong: () => [endpoint(), ['chat', 'access_token', 'wrong-' + b64url(String(Math.random()))]],
  none: () => [endpoint(), ['chat']],
};

// sentText describes what the page hands to new WebSocket, secrets masked:
// userinfo, query values, and subprotocol entries other than chat and the
// marker.
function sentText(url, protocols) {
  const u = new URL(url);
  const user = u.username ? mask(decodeURIComponent(u.username)) + '@' : '';
  const q = [...u.searchParams].map(([k, v]) => `${k}=${mask(v)}`).join('&');
  const shown = `${u.protocol}//${user}${u.host}${u.pathname}${q ? '?' + q : ''}`;
  const ps = protocols.map((p) => {
    if (p === 'chat' || p === 'access_token') return p;
    const prefix = 'base64url.bearer.authorization.k8s.io.';
    return p.startsWith(prefix) ? prefix + mask(p.slice(prefix.length)) : mask(p);
  });
  return `sent: ${shown} with protocols ${JSON.stringify(ps)}`;
}

// card adds a result box for one attempt after the earlier ones, so that
// cards read in click order. Lines go into the current list; a server block
// (see showLast) ends it, so that an attempt's lines and its server answer
// stay together when a card holds two attempts. done() marks it finished.
function card(title) {
  const box = document.createElement('div');
  box.className = 'card';
  const h = document.createElement('h3');
  h.textContent = title;
  box.append(h);
  $('results').append(box);
  box.scrollIntoView({ block: 'nearest' });
  let list = null;
  return {
    line(text, cls) {
      if (!list) {
        list = document.createElement('ul');
        box.append(list);
      }
      const li = document.createElement('li');
      li.textContent = text;
      if (cls) li.className = cls;
      list.append(li);
    },
    // server adds what the server answered: a summary line, the verdict in
    // a prominent box (cls "ok" or "bad"), and text folded under a summary.
    server(summary, verdict, cls, text) {
      list = null;
      if (summary) {
        const p = document.createElement('p');
        p.className = 'server';
        p.textContent = summary;
        box.append(p);
      }
      if (verdict) {
        const v = document.createElement('div');
        v.className = 'verdict ' + cls;
        v.textContent = verdict;
        box.append(v);
      }
      const pre = document.createElement('pre');
      pre.textContent = text;
      const d = document.createElement('details');
      const s = document.createElement('summary');
      s.textContent = 'what the server saw, masked (/last)';
      d.append(s, pre);
      box.append(d);
    },
    done() { box.dataset.done = 'true'; },
  };
}

// connect opens one socket, sends first (if any) once it is open, reads
// the hello, does one round trip, closes, and shows /last. It resolves
// with the close event's code when all that is done.
function connect(c, url, protocols, first) {
  c.line(sentText(url, protocols));
  return new Promise((resolve) => {
    let ws;
    try {
      ws = new WebSocket(url, protocols);
    } catch (e) {
      c.line('the constructor threw: ' + e.message, 'bad');
      resolve(0);
      return;
    }
    let opened = false, hello = false, got = 0, sentAt = 0;
    ws.onopen = () => {
      opened = true;
      c.line(`open; ws.protocol = "${ws.protocol}"`, 'ok');
      if (first !== undefined) {
        ws.send(first);
        c.line('first message ' + first.replace(/"token":"([^"]*)"/, (_, t) => `"token":"${mask(t)}"`));
      }
    };
    ws.onmessage = (ev) => {
      if (got++ === 0) {
        const h = JSON.parse(ev.data);
        hello = true;
        c.line(`hello: principal ${JSON.stringify(h.principal)}, source "${h.source}", protocol "${h.protocol}"`, 'ok');
        sentAt = performance.now();
        ws.send('ping ' + new Date().toISOString());
        return;
      }
      c.line(`echo "${ev.data}" after ${(performance.now() - sentAt).toFixed(1)} ms`, 'ok');
      ws.close(1000, 'done');
    };
    ws.onerror = () => c.line('error event (the browser hides the HTTP status from the page; the server\'s answer is below)', 'bad');
    ws.onclose = async (ev) => {
      const ok = hello && ev.code === 1000;
      c.line(`close ${ev.code}${ev.reason ? ' "' + ev.reason + '"' : ''}, wasClean ${ev.wasClean}`, ok ? 'ok' : 'bad');
      if (ok) c.line('outcome: accepted', 'ok');
      else if (ev.code === 1006 && !opened) c.line('outcome: refused before the upgrade; the browser shows only 1006, /last has the status', 'bad');
      else c.line(`outcome: refused with close ${ev.code}${ev.reason ? ' "' + ev.reason + '"' : ''}`, 'bad');
      await showLast(c, new URL(url).pathname);
      resolve(ev.code);
    };
  });
}

// showLast shows /last once the server has recorded the outcome of the
// handshake to path (a refusal by close frame is recorded just after the
// frame is sent): a summary, the verdict, and the JSON folded.
async function showLast(c, path) {
  try {
    let text = '', last = null;
    for (let i = 0; i < 20; i++) {
      const res = await fetch('/last');
      if (!res.ok) {
        text = res.status + ' ' + await res.text();
        last = null;
        break;
      }
      last = await res.json();
      text = JSON.stringify(last, null, 2);
      if (!last || last.path !== path || last.status !== 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (last && last.path === path) c.server(lastSummary(last), ...verdict(last), '/last: ' + text);
    else c.server('', '', '', '/last: ' + text);
  } catch (e) {
    c.server('', '', '', '/last: ' + e.message);
  }
}

// lastSummary is one line of what the server saw and answered.
function lastSummary(l) {
  let s = `server (/last): ${l.path} answered ${l.status || 'nothing'}`;
  if (l.close) s += `, then close ${l.close}`;
  if (l.source) s += `, credential from ${l.source}`;
  else if (l.ways.length) s += `; the handshake carried: ${l.ways.join(', ')}`;
  else s += '; the handshake carried no credential';
  return s;
}

// verdict is the outcome in words and its class: the close code, or the
// HTTP status the page could not see, with the server's reason.
function verdict(l) {
  const reason = l.reason ? ` "${l.reason}"` : '';
  if (l.status === 101 && !l.close && !l.reason) return [`Accepted (101), credential from ${l.source || 'the first message'}`, 'ok'];
  if (l.close) return [`Refused after the upgrade: close ${l.close}${reason}`, 'bad'];
  if (!l.status) return [`Failed: no answer${reason}`, 'bad'];
  return [`Refused: HTTP ${l.status}${reason} (the page saw only 1006)`, 'bad'];
}

function title(name, routed) {
  return routed && closeFrames() ? `${name} (close frame)` : name;
}

async function viaCookie(ev) {
  ev.preventDefault();
  const c = card(title('Cookie', true));
  const res = await fetch('/login', { method: 'POST', body: new URLSearchParams({ token: $('token').value }) });
  c.line(`POST /login: ${res.status}`, res.ok ? 'ok' : 'bad');
  await connect(c, endpoint(), ['chat']);
  const out = await fetch('/logout', { method: 'POST' });
  c.line(`POST /logout: ${out.status}`);
  c.done();
}

// fetchTicket asks POST /ticket for a ticket with the token as Bearer, and
// returns it, or '' after showing the refusal.
async function fetchTicket(c) {
  const t = $('token').value;
  try {
    const res = await fetch('/ticket', { method: 'POST', headers: { Authorization: 'Bearer ' + t } });
    if (!res.ok) {
      c.line(`POST /ticket (Authorization: Bearer ${mask(t)}): ${res.status} ${(await res.text()).trim()}`, 'bad');
      return '';
    }
    const body = await res.json();
    c.line(`POST /ticket (Authorization: Bearer ${mask(t)}): ${res.status}, ticket ${mask(body.ticket)}, valid ${body.expires_in} s, once`, 'ok');
    return body.ticket;
  } catch (e) {
    c.line('POST /ticket failed: ' + e.message, 'bad');
    return '';
  }
}

const withTicket = (t) => { const u = new URL(endpoint()); u.searchParams.set('ticket', t); return u.href; };

const ticketActions = {
  async query(c) {
    const t = await fetchTicket(c);
    if (t) await connect(c, withTicket(t), ['chat']);
  },
  async subprotocol(c) {
    const t = await fetchTicket(c);
    if (t) await connect(c, endpoint(), ['chat', 'access_token', t]);
  },
  async reuse(c) {
    const t = await fetchTicket(c);
    if (!t) return;
    c.line('first use:');
    await connect(c, withTicket(t), ['chat']);
    c.line('second use of the same ticket:');
    await connect(c, withTicket(t), ['chat']);
  },
};

const authMessage = (t) => JSON.stringify({ type: 'auth', token: t });
const inbandActions = {
  ok: (c) => connect(c, cfg.wsInband, ['chat'], authMessage($('token').value)),
  wrong: (c) => connect(c, cfg.wsInband, ['chat'], authMessage('wrong-' + b64url(String(Math.random())))),
  none: (c) => connect(c, cfg.wsInband, ['chat']),
};

// fetchShortToken asks POST /short-token for a token valid 2 s, as
// fetchTicket does for a ticket.
async function fetchShortToken(c) {
  try {
    const res = await fetch('/short-token', { method: 'POST', headers: { Authorization: 'Bearer ' + $('token').value } });
    if (!res.ok) {
      c.line(`POST /short-token: ${res.status} ${(await res.text()).trim()}`, 'bad');
      return '';
    }
    const body = await res.json();
    c.line(`POST /short-token: ${res.status}, token ${mask(body.token)}, valid ${body.expires_in} s`, 'ok');
    return body.token;
  } catch (e) {
    c.line('POST /short-token failed: ' + e.message, 'bad');
    return '';
  }
}

// refreshSession opens /ws-refresh with a short token and, once a second,
// sends a fresh one in band, three times; then one round trip and a close.
// The socket is still the first one past the first token's expiry.
async function refreshSession(c) {
  const t = await fetchShortToken(c);
  if (!t) return;
  const url = cfg.wsRefresh || `ws://${location.host}/ws-refresh`;
  c.line(sentText(url, ['chat', 'access_token', t]));
  await new Promise((resolve) => {
    const ws = new WebSocket(url, ['chat', 'access_token', t]);
    let hello = false, opened = 0, refreshed = 0, sentAt = 0, timer = 0;
    const refresh = async () => {
      const fresh = await fetchShortToken(c);
      if (!fresh || ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ type: 'refresh', token: fresh }));
      c.line(`sent {"type":"refresh","token":"${mask(fresh)}"} ${((performance.now() - opened) / 1000).toFixed(1)} s after open`);
    };
    ws.onopen = () => { opened = performance.now(); c.line(`open; ws.protocol = "${ws.protocol}"`, 'ok'); };
    ws.onmessage = (ev) => {
      if (!hello) {
        const h = JSON.parse(ev.data);
        hello = true;
        c.line(`hello: principal ${JSON.stringify(h.principal)}, source "${h.source}", protocol "${h.protocol}"`, 'ok');
        timer = setTimeout(refresh, 1000);
        return;
      }
      let m = null;
      try { m = JSON.parse(ev.data); } catch (e) { /* the echo */ }
      if (m && m.type === 'refreshed') {
        refreshed++;
        c.line(`refreshed: the session now expires in ${m.expires_in_ms / 1000} s`, 'ok');
        if (refreshed < 3) timer = setTimeout(refresh, 1000);
        else {
          c.line(`still the same socket ${((performance.now() - opened) / 1000).toFixed(1)} s after open, past the first token's expiry`, 'ok');
          sentAt = performance.now();
          ws.send('ping ' + new Date().toISOString());
        }
        return;
      }
      c.line(`echo "${ev.data}" after ${(performance.now() - sentAt).toFixed(1)} ms`, 'ok');
      ws.close(1000, 'done');
    };
    ws.onerror = () => c.line('error event', 'bad');
    ws.onclose = async (ev) => {
      clearTimeout(timer);
      const ok = hello && refreshed === 3 && ev.code === 1000;
      c.line(`close ${ev.code}${ev.reason ? ' "' + ev.reason + '"' : ''}, wasClean ${ev.wasClean}`, ok ? 'ok' : 'bad');
      c.line(ok ? 'outcome: accepted' : `outcome: closed with ${ev.code}${ev.reason ? ' "' + ev.reason + '"' : ''}`, ok ? 'ok' : 'bad');
      await showLast(c, new URL(url).pathname);
      resolve();
    };
  });
}

function goCommand() {
  const t = $('token').value || 'TOKEN';
  $('gocmd').textContent = `go run github.com/wsgate/wsgate/cmd/wsgate-client@latest -url ${cfg.ws} -token ${t}`;
}

async function init() {
  // A POST, so that the browser sends Origin, which /config requires.
  const res = await fetch('/config', { method: 'POST' });
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
      'even with the right token, and in close-frame mode too (an origin refusal is never upgraded); ' +
      'the cookie attempt shows why that matters: the browser sends the cookie of the other port along, ' +
      'and only the Origin check stops it. In Firefox, each refusal makes the next socket to that host ' +
      'wait longer (it backs off after failed WebSockets), so attempts from here get slower.';
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

// run gives each click its card and marks it done at the end.
function run(name, routed, action) {
  const c = card(title(name, routed));
  Promise.resolve(action(c)).finally(() => c.done());
}

for (const b of document.querySelectorAll('button[data-way]')) {
  b.addEventListener('click', () => run(b.textContent, true, (c) => {
    const [url, protocols] = ways[b.dataset.way]($('token').value);
    return connect(c, url, protocols);
  }));
}
for (const b of document.querySelectorAll('button[data-ticket]')) {
  b.addEventListener('click', () => run(b.textContent, true, ticketActions[b.dataset.ticket]));
}
for (const b of document.querySelectorAll('button[data-inband]')) {
  b.addEventListener('click', () => run(b.textContent, false, inbandActions[b.dataset.inband]));
}
for (const b of document.querySelectorAll('button[data-refresh]')) {
  b.addEventListener('click', () => run(b.textContent, false, refreshSession));
}
$('login').addEventListener('submit', viaCookie);
$('token').addEventListener('input', goCommand);
$('copy').addEventListener('click', () => navigator.clipboard.writeText($('gocmd').textContent));
init();
