// client.mjs opens one WebSocket with the Node `ws` package or Node's
// built-in WebSocket and prints what it observed as one JSON line. The Go
// tests run it once per case:
//
//   node [--experimental-websocket] client.mjs '{"impl":"ws","url":"ws://...","protocols":["chat"],"headers":{...},"origin":"http://..."}'
//   node client.mjs '{"impl":"version"}'
//
// It reads the server's greeting, sends one message, waits for the echo and
// closes with 1000. It always exits 0 after printing; a bug in the script
// itself exits 2.
import { readFileSync } from 'node:fs';
import WS from 'ws';

const cfg = JSON.parse(process.argv[2] ?? '{}');
const ping = 'ping from page';

function print(r) {
  process.stdout.write(JSON.stringify(r) + '\n');
}

function run() {
  return new Promise((resolve) => {
    const r = { thrown: '', opened: false, protocol: '', greeting: '', echo: '', error: false, closeCode: 0, closeReason: '', wasClean: false, status: 0, timedOut: false };
    let done = false;
    const finish = () => { if (!done) { done = true; clearTimeout(timer); resolve(r); } };
    const timer = setTimeout(() => { r.timedOut = true; finish(); }, cfg.timeoutMs ?? 10000);
    let ws;
    try {
      if (cfg.impl === 'ws') {
        const opts = { handshakeTimeout: 5000 };
        if (cfg.headers) opts.headers = cfg.headers;
        if (cfg.origin) opts.origin = cfg.origin;
        ws = new WS(cfg.url, cfg.protocols ?? [], opts);
        ws.on('unexpected-response', (req, res) => {
          r.status = res.statusCode;
          r.error = true;
          req.destroy();
          finish();
        });
      } else if (cfg.impl === 'builtin') {
        if (typeof globalThis.WebSocket !== 'function') {
          throw new Error('no global WebSocket: run node with --experimental-websocket');
        }
        // cfg.init, when set, is passed as the second argument instead of
        // the protocol list: undici's non-standard WebSocketInit dictionary.
        ws = cfg.init ? new WebSocket(cfg.url, cfg.init) : new WebSocket(cfg.url, cfg.protocols ?? []);
      } else {
        throw new Error('unknown impl ' + cfg.impl);
      }
    } catch (e) {
      r.thrown = `${e.name}: ${e.message}`;
      finish();
      return;
    }
    let n = 0;
    ws.onopen = () => { r.opened = true; r.protocol = ws.protocol; };
    // undici fires no close event after a refused handshake: give close
    // 1.5 s to arrive, then report what we have.
    ws.onerror = () => { r.error = true; setTimeout(finish, 1500); };
    ws.onmessage = (m) => {
      n++;
      const data = typeof m.data === 'string' ? m.data : String(m.data);
      if (n === 1) { r.greeting = data; ws.send(ping); } else { r.echo = data; ws.close(1000, 'done'); }
    };
    ws.onclose = (c) => { r.closeCode = c.code; r.closeReason = c.reason; r.wasClean = c.wasClean; finish(); };
  });
}

try {
  if (cfg.impl === 'version') {
    const wsVersion = JSON.parse(readFileSync(new URL('./node_modules/ws/package.json', import.meta.url))).version;
    print({ node: process.version, ws: wsVersion, undici: process.versions.undici ?? '' });
  } else {
    print(await run());
  }
  process.exit(0);
} catch (e) {
  process.stderr.write(String(e?.stack ?? e) + '\n');
  process.exit(2);
}
