// Screenshots of every view, light and dark, plus *Now* at 200 % zoom (a
// 640 px wide viewport at device scale 2), into artifacts/ui/. Each waits
// for its view's content before the picture is taken.

import assert from 'node:assert/strict';
import path from 'node:path';
import { WAIT_MS } from './support.mjs';

const VIEWS = {
  now: 'ls-now article.context.current',
  apps: 'ls-apps h2',
  events: 'ls-events .log li.entry',
  registrations: 'ls-registrations form.register',
  settings: 'ls-settings table.settings',
};

async function shoot(page, base, view, file) {
  await page.goto(`${base}/ui/#${view}`);
  await page.locator('.link.live').waitFor({ timeout: WAIT_MS });
  await page.locator(VIEWS[view]).first().waitFor({ timeout: WAIT_MS });
  if (view === 'events') {
    // Show one event's JSON, as support would.
    await page.locator('ls-events .log li.entry details summary').first().click();
    await page.locator('ls-events .log li.entry pre.json').first().waitFor({ timeout: WAIT_MS });
  }
  // No focus ring from the navigation itself in the picture.
  await page.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
  await page.screenshot({ path: file, fullPage: true });
}

export async function screenshots(t) {
  const { hub, browser, artifacts } = t;
  const made = [];
  for (const scheme of ['light', 'dark']) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: scheme });
    await context.addCookies(await t.context.cookies());
    const page = await context.newPage();
    for (const view of Object.keys(VIEWS)) {
      const file = path.join(artifacts, `${view}-${scheme}.png`);
      await shoot(page, hub.base, view, file);
      made.push(path.basename(file));
    }
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg === 'rgb(255, 255, 255)', scheme === 'light', `${scheme} background is ${bg}`);
    await context.close();
  }
  const zoomed = await browser.newContext({ viewport: { width: 640, height: 900 }, deviceScaleFactor: 2 });
  await zoomed.addCookies(await t.context.cookies());
  const page = await zoomed.newPage();
  const file = path.join(artifacts, 'now-zoom200-light.png');
  await shoot(page, hub.base, 'now', file);
  // Reflows rather than scrolling sideways.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `at 200 % zoom the page scrolls sideways by ${overflow} px`);
  made.push(path.basename(file));
  await zoomed.close();
  return made.join(', ');
}
