// Browser tests of the dashboard: Debian's Chromium driven by playwright-core
// against the real lockstep-hub binary, with real FHIRcast apps.
//
//   cargo build -p lockstep-hub && npm ci --prefix ui && node ui/tests/run.mjs
//
// Environment: LOCKSTEP_HUB_BIN (default target/debug/lockstep-hub),
// CHROMIUM (default /usr/bin/chromium), LOCKSTEP_UI_VERBOSE=1 (hub logs).
// Screenshots of every view, light and dark, go to artifacts/ui/.
// Exit code 0 when every test passed.

import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { REPO_ROOT, startHub } from './support.mjs';
import { TESTS } from './tests.mjs';
import { screenshots } from './screenshots.mjs';
import { smartLaunch } from './smart.mjs';

const ARTIFACTS = path.join(REPO_ROOT, 'artifacts', 'ui');
const WATCHDOG_MS = 240000;

const watchdog = setTimeout(() => {
  console.error(`not ok - the whole run took longer than ${WATCHDOG_MS} ms`);
  process.exit(1);
}, WATCHDOG_MS);

await mkdir(ARTIFACTS, { recursive: true });
for (const f of await readdir(ARTIFACTS)) {
  if (f.startsWith('failure-')) await rm(path.join(ARTIFACTS, f)); // from an earlier run
}
// A short grace period, so that a killed app is reported within the test;
// a system settings file in which IT manages the desktop notifications.
const hub = await startHub(['--grace-period-ms', '3000'], 'notifications = false\nlocked = ["notifications"]\n');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Playwright adds --headless and a fresh --user-data-dir of its own.
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && pageErrors.push(m.text()));
page.on('response', (r) => r.status() >= 400 && pageErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`));

const t = { hub, browser, context, page, artifacts: ARTIFACTS, shared: {} };
let failed = 0;
let n = 0;
const all = [
  ...TESTS,
  ['SMART launch: a web app from another origin signs in with PKCE, consents, receives and ACKs an event', smartLaunch],
  ['screenshots of every view, light and dark, and at 200 % zoom', screenshots],
];
for (const [name, test] of all) {
  n += 1;
  const started = Date.now();
  try {
    const note = await test(t);
    console.log(`ok ${n} - ${name} (${Date.now() - started} ms)${note ? ` # ${note}` : ''}`);
  } catch (e) {
    failed += 1;
    console.log(`not ok ${n} - ${name}`);
    console.log(String(e?.stack || e).replace(/^/gm, '  # '));
    await page.screenshot({ path: path.join(ARTIFACTS, `failure-${n}.png`), fullPage: true }).catch(() => {});
  }
}
// The used one-time link answers 401 on purpose.
const unexpected = pageErrors.filter((e) => !/^401 GET .*\/admin\/login\?code=/.test(e));
if (unexpected.length) {
  failed += 1;
  console.log(`not ok ${n + 1} - the page logged errors:\n${unexpected.map((e) => `  # ${e}`).join('\n')}`);
}
await browser.close();
if (failed) console.log(hub.stderr().split('\n').slice(-40).map((l) => `  # hub: ${l}`).join('\n'));
await hub.stop();
clearTimeout(watchdog);
console.log(failed ? `\n${failed} failed` : `\nall ${n} passed; screenshots in ${path.relative(REPO_ROOT, ARTIFACTS)}/`);
process.exit(failed ? 1 : 0);
