// The first visit to the overview with an empty cache, in Debian's Chromium:
// bytes transferred for the front end (wasm, js, css: as sent, so gzipped
// when the server compresses) and the time until the page answers clicks
// (`<html data-hydrated>`, set by the front end once hydrated), from the
// start of navigation. Run by bench/first_visit.sh against a running
// `tern demo`; prints one JSON line (medians of RUNS visits).
import { chromium } from '@playwright/test';

const base = process.env.BASE ?? 'http://127.0.0.1:3190';
const password = process.env.PASSWORD ?? 'bench-password';
const runs = Number(process.env.RUNS ?? 5);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});

// Sign in once; every visit then starts from a fresh context (empty cache)
// that carries only the session cookie.
const login = await browser.newContext();
const lp = await login.newPage();
await lp.goto(`${base}/login`);
await lp.getByLabel('Username').fill('pm');
await lp.getByLabel('Password').fill(password);
await lp.getByRole('button', { name: 'Sign in' }).click();
await lp.getByTestId('user-role').waitFor();
const cookies = await login.cookies();
await login.close();

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const visits = [];
for (let i = 0; i < runs; i++) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  await context.addCookies(cookies);
  await context.addInitScript(() => {
    new MutationObserver((_, obs) => {
      if (document.documentElement.hasAttribute('data-hydrated')) {
        window.__hydratedAt = performance.now();
        obs.disconnect();
      }
    }).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-hydrated'] });
  });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const urls = new Map();
  const sizes = { wasm: 0, js: 0, css: 0, html: 0 };
  const failed = [];
  cdp.on('Network.responseReceived', (e) => urls.set(e.requestId, e.response.url));
  cdp.on('Network.loadingFinished', (e) => {
    const url = urls.get(e.requestId) ?? '';
    const kind = url.endsWith('.wasm') ? 'wasm' : url.endsWith('.js') ? 'js' : url.endsWith('.css') ? 'css' : url === `${base}/` ? 'html' : null;
    if (kind) sizes[kind] += e.encodedDataLength;
  });
  page.on('requestfailed', (r) => failed.push(`${r.url()} ${r.failure()?.errorText}`));
  await page.goto(`${base}/`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached', timeout: 120_000 });
  await page.waitForLoadState('networkidle');
  const tti = await page.evaluate(() => window.__hydratedAt);
  visits.push({ ...sizes, tti, failed });
  await context.close();
}
await browser.close();

const out = {
  runs,
  wasm_bytes: median(visits.map((v) => v.wasm)),
  js_bytes: median(visits.map((v) => v.js)),
  css_bytes: median(visits.map((v) => v.css)),
  html_bytes: median(visits.map((v) => v.html)),
  tti_ms: Math.round(median(visits.map((v) => v.tti))),
  tti_ms_all: visits.map((v) => Math.round(v.tti)),
  failed_requests: visits.flatMap((v) => v.failed),
};
console.log(JSON.stringify(out));
