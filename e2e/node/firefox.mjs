// firefox.mjs drives Debian's headless Firefox (/usr/bin/firefox-esr) with
// puppeteer-core over WebDriver BiDi; nothing is downloaded. It reads one
// JSON object on stdin:
//
//   {"jobs": [{"visit": ["http://.../login", "http://.../page"], "expr": "tryWS(...)"}, ...],
//    "insecure": false}
//
// launches one browser with a fresh profile, runs each job in a fresh
// browser context (its own cookies and cached credentials): loads each URL of
// visit in turn and evaluates expr, a promise, on the last page. It prints
// one JSON line: {"version": "...", "results": [{"value": ..., "hop": "h2",
// "error": ""}, ...]}. "insecure" accepts the test's self-signed
// certificates. Each job is bounded to 30 seconds, the whole run by the
// caller. A failure to launch exits 3, with the reason on stderr.
import puppeteer from 'puppeteer-core';

const executablePath = process.env.FIREFOX ?? '/usr/bin/firefox-esr';

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

function bounded(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(what + ' timed out')), ms); }),
  ]).finally(() => clearTimeout(timer));
}

async function runJob(browser, job) {
  const ctx = await browser.createBrowserContext();
  try {
    const page = await ctx.newPage();
    for (const url of job.visit) {
      await page.goto(url, { waitUntil: 'load', timeout: 15000 });
    }
    const hop = await page.evaluate('performance.getEntriesByType("navigation")[0]?.nextHopProtocol ?? ""');
    const value = await page.evaluate(job.expr);
    return { value, hop, error: '' };
  } finally {
    await ctx.close().catch(() => {});
  }
}

const cfg = await readStdin();
let browser;
try {
  browser = await bounded(puppeteer.launch({
    browser: 'firefox',
    executablePath,
    headless: true,
    acceptInsecureCerts: !!cfg.insecure,
    extraPrefsFirefox: {
      // A test server on loopback: no proxy lookups, no telemetry.
      'network.proxy.type': 0,
      'datareporting.policy.dataSubmissionEnabled': false,
    },
  }), 60000, 'launching Firefox');
} catch (e) {
  process.stderr.write('cannot launch ' + executablePath + ': ' + (e && e.message) + '\n');
  process.exit(3);
}
const out = { version: await browser.version(), results: [] };
try {
  for (const job of cfg.jobs ?? []) {
    try {
      out.results.push(await bounded(runJob(browser, job), 30000, 'job'));
    } catch (e) {
      out.results.push({ value: null, hop: '', error: String(e && e.message || e) });
    }
  }
} finally {
  await bounded(browser.close(), 10000, 'closing Firefox').catch(() => {});
}
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0);
