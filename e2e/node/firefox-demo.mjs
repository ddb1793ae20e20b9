// firefox-demo.mjs drives the demo page (cmd/wsgate-demo) in Debian's
// headless Firefox (/usr/bin/firefox-esr) with puppeteer-core over WebDriver
// BiDi; nothing is downloaded. It launches one browser with a fresh profile,
// prints {"version": "..."} as its first line, then reads one JSON command
// per line on stdin and answers each with one JSON line, {"value": ...} or
// {"error": "..."}:
//
//   {"op": "open", "url": "http://.../"}   a fresh browser context (its own
//        cookies and cached credentials) loads url and waits until the page
//        has its config; the value is the tab's number
//   {"op": "click", "tab": 0, "sel": "button[...]", "wait": "(n) => ...",
//    "n": 3, "timeout": 30000}   clicks sel, then polls the page function
//        wait with n until it returns something other than false (or
//        timeout ms pass); the value is what it returned
//   {"op": "eval", "tab": 0, "expr": "..."}   evaluates expr on the tab
//
// It exits when stdin ends. A failure to launch exits 3, with the reason on
// stderr.
import readline from 'node:readline';
import puppeteer from 'puppeteer-core';

const executablePath = process.env.FIREFOX ?? '/usr/bin/firefox-esr';

function bounded(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(what + ' timed out')), ms); }),
  ]).finally(() => clearTimeout(timer));
}

let browser;
try {
  browser = await bounded(puppeteer.launch({
    browser: 'firefox',
    executablePath,
    headless: true,
    extraPrefsFirefox: {
      // A demo server on loopback: no proxy lookups, no telemetry.
      'network.proxy.type': 0,
      'datareporting.policy.dataSubmissionEnabled': false,
    },
  }), 60000, 'launching Firefox');
} catch (e) {
  process.stderr.write('cannot launch ' + executablePath + ': ' + (e && e.message) + '\n');
  process.exit(3);
}

const tabs = [];

async function open(url) {
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  await page.setViewport({ width: 1024, height: 800 });
  await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  await page.waitForFunction(`document.getElementById('token').value !== ''`, { polling: 20, timeout: 10000 });
  tabs.push(page);
  return tabs.length - 1;
}

async function click(page, cmd) {
  await page.click(cmd.sel);
  const deadline = Date.now() + (cmd.timeout ?? 30000);
  const fn = `(${cmd.wait})(${JSON.stringify(cmd.n)})`;
  for (;;) {
    const v = await page.evaluate(fn);
    if (v !== false) return v;
    if (Date.now() > deadline) throw new Error(`no finished card ${cmd.n} within ${cmd.timeout} ms after clicking ${cmd.sel}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function run(cmd) {
  switch (cmd.op) {
    case 'open': return open(cmd.url);
    case 'click': return click(tabs[cmd.tab], cmd);
    case 'eval': return tabs[cmd.tab].evaluate(cmd.expr);
    default: throw new Error('unknown op ' + cmd.op);
  }
}

const write = (o) => new Promise((r) => process.stdout.write(JSON.stringify(o) + '\n', r));
await write({ version: await browser.version() });
const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  try {
    const cmd = JSON.parse(line);
    const value = await bounded(run(cmd), (cmd.timeout ?? 30000) + 15000, cmd.op);
    await write({ value: value ?? null });
  } catch (e) {
    await write({ error: String(e && e.message || e) });
  }
}
await bounded(browser.close(), 10000, 'closing Firefox').catch(() => {});
process.exit(0);
