import { expect, Locator, Page, test } from '@playwright/test';
import { bucketActions, consoleErrors, demoDir, hydrated, range, shot, signedInPage, signIn } from './helpers';

// The newcomer's journey on the demo itself (`tern demo`'s stores and its
// migration `messages-demo`, 16 buckets of contacts and messages, a live
// writer on): an engineer takes every bucket from planned to verified
// through the UI while a program manager's overview is open and checked at
// each step; then the client owner's pages. Every page is looked at at
// 1,400 px and at 390 px (no sideways scroll), and screenshots are written
// to end2end/screenshots/ (ignored by git).

// Every check waits on durable state (a bucket's phase, the PM card's
// phase counts, a forecast that only changes when the next phase starts),
// never on a message that may go as the buckets move. An action's answer
// stays until dismissed, or until the board has shown for a few seconds that
// the state it describes changed: reading it is reliable too.

const PHONE = { width: 390, height: 844 };

/** The page scrolls no wider than the window. */
async function expectNoSidewaysScroll(page: Page): Promise<void> {
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
  }));
  expect(scroll, `${page.url()} scrolls sideways to ${scroll}px in a ${width}px window`).toBeLessThanOrEqual(width);
}

/** A number shown with thousands separators. */
const num = (s: string | null) => Number((s ?? '').replace(/[^\d.]/g, ''));

/** Buckets per phase as the PM card's phase bar says. */
async function phaseCounts(root: Locator): Promise<Record<string, number>> {
  const pairs = await root
    .getByTestId('phase-count')
    .evaluateAll((els) => els.map((e) => [e.getAttribute('data-phase') ?? '', Number(e.getAttribute('data-count'))]));
  return Object.fromEntries(pairs);
}

test('an engineer takes the demo migration from planned to verified while the PM watches the overview', async ({ browser }) => {
  test.setTimeout(15 * 60_000);
  const engineer = await signedInPage(browser, 'engineer');
  const pm = await signedInPage(browser, 'pm');
  const errors = consoleErrors(engineer);
  const pmErrors = consoleErrors(pm);

  // The PM's card, checked at every step: buckets per phase, rows, pace,
  // ETA, accuracy and what blocks (only the demo's seeded gated client
  // ramps may; never a failed, stuck or paused bucket or a failed job).
  const card = pm.getByTestId('migration-card').filter({ hasText: 'messages-demo' });
  const cardPhases = (want: Record<string, number>, timeout = 240_000) =>
    expect.poll(() => phaseCounts(card), { timeout, intervals: [1_000] }).toEqual(want);
  const onlyGatedRamps = async () => {
    for (const g of await card.getByTestId('blocker-group').allTextContents()) expect(g).toMatch(/gated ramp/);
  };

  // Before anything moves: nothing over 100%, idle, no ETA yet.
  await cardPhases({ planned: 16 }, 15_000);
  await expect(card.getByTestId('progress')).toHaveText('0.0%');
  await expect(card.getByTestId('pace')).toHaveText('idle');
  await expect(card.getByTestId('eta')).toHaveText('after load, catch-up, verify jobs run');
  await expect(card.getByTestId('card-accuracy')).toHaveText('not verified yet');
  await onlyGatedRamps();
  await hydrated(pm);
  await shot(pm, 'overview-1400-planned');

  // The engineer opens the migration: 16 buckets, one plan, ranges that
  // follow on from each other, and a pager whose buttons are buttons.
  await engineer.getByRole('link', { name: 'messages-demo' }).click();
  await expect(engineer.getByTestId('bucket-row')).toHaveCount(16);
  await expect(engineer.getByRole('button', { name: 'Next →' })).toBeVisible();
  await expect(engineer.getByTestId('bucket-grid')).not.toContainText('page_start');
  await hydrated(engineer);
  const buckets = bucketActions(engineer);
  const { selected, act } = buckets;
  /** Selects buckets `from`..`to` (indexes, inclusive), or every bucket. */
  const select = (from?: number, to?: number) =>
    from === undefined || to === undefined ? buckets.selectAll(16) : buckets.select(...range(from, to));
  const inPhase = (phase: string, count: number, timeout = 240_000) =>
    expect(engineer.locator(`[data-testid=bucket-row][data-phase=${phase}]`)).toHaveCount(count, { timeout });
  const result = engineer.getByTestId('action-result');
  const refusal = engineer.getByTestId('action-error');
  const dualWritten = engineer.locator('[data-testid=bucket-row][data-dual-write=true]');

  // Capture, then half the buckets' bulk load.
  await engineer.getByTestId('install-capture').click();
  await expect(engineer.getByTestId('capture-result')).toContainText('change capture installed');
  await select(0, 7);
  expect(await act('Bulk load')).toBe('8 bulk-load jobs queued');
  // Once the buckets move, the answer stays beside the new state, marked
  // as past, until dismissed (or a few seconds later).
  await expect(engineer.getByTestId('action-past')).toBeVisible();
  await expect(result).toHaveText('8 bulk-load jobs queued');
  await engineer.getByTestId('action-dismiss').click();
  await expect(result).toHaveCount(0);
  await inPhase('loaded', 8);

  // The PM sees half loaded, a measured pace, and an ETA for the rest of
  // the load from the loads that ran (sub-second jobs count); catch-up and
  // verify have not run, so the whole has no ETA yet and says why.
  await cardPhases({ planned: 8, loaded: 8 });
  const half = num(await card.getByTestId('progress').textContent());
  expect(half).toBeGreaterThan(30);
  expect(half).toBeLessThan(70);
  await expect(card.getByTestId('pace')).toHaveText(/rows\/s/);
  await expect(card.getByTestId('stage-load')).toHaveText(/^load: [\d,]+ rows in 8 buckets · [\d,]+ rows\/s · (under 1s|\d+[smh])/);
  await expect(card.getByTestId('stage-catch-up')).toContainText('not measured yet');
  await expect(card.getByTestId('eta')).toHaveText('after catch-up, verify jobs run');
  await onlyGatedRamps();
  await shot(pm, 'overview-1400-loading');

  // The other half. Every bucket copied: 100.0%, never more, even though
  // the live writer grew the source since the plan.
  await select(8, 15);
  expect(await act('Bulk load')).toBe('8 bulk-load jobs queued');
  await inPhase('loaded', 16);
  await cardPhases({ loaded: 16 });
  await expect(card.getByTestId('progress')).toHaveText('100.0%', { timeout: 15_000 });
  await expect(card.getByTestId('stage-load')).toHaveCount(0);
  await onlyGatedRamps();

  // Catch-up is refused until the relay covers the buckets, and says why;
  // the refusal goes once the relay does (and the user has seen it go).
  await select();
  expect(await act('Catch up')).toContain('not dual-written');
  await expect(refusal).toBeVisible();
  await engineer.getByTestId('relay-input').fill('100%');
  await engineer.getByTestId('relay-set').click();
  await expect(engineer.getByTestId('relay-ramp')).toHaveText('100%');
  await expect(engineer.getByTestId('action-past')).toBeVisible({ timeout: 30_000 });
  await expect(refusal).toHaveCount(0, { timeout: 30_000 });
  // The relay marks each bucket dual-written as its ramp covers it.
  await expect(dualWritten).toHaveCount(16, { timeout: 60_000 });
  await select(0, 7);
  expect(await act('Catch up')).toBe('8 catch-up jobs queued');
  await inPhase('caught-up', 8);
  await cardPhases({ loaded: 8, 'caught-up': 8 });
  await expect(card.getByTestId('stage-catch-up')).toHaveText(/^catch-up: 8 buckets · [\d.,]+ buckets\/min · (under 1s|\d+[smh])/);
  await expect(card.getByTestId('eta')).toHaveText('after a verify job runs');
  await select(8, 15);
  expect(await act('Catch up')).toBe('8 catch-up jobs queued');
  await inPhase('caught-up', 16);
  await cardPhases({ 'caught-up': 16 });
  await onlyGatedRamps();

  // Verification, half then all: values compared by the target's types (a
  // bool in SQLite's integer is no difference).
  await select(0, 7);
  expect(await act('Verify')).toBe('8 verification jobs queued');
  await inPhase('verified', 8, 600_000);
  await cardPhases({ 'caught-up': 8, verified: 8 }, 60_000);
  // Every phase left is measured now: a whole ETA with its range.
  await expect(card.getByTestId('stage-verify')).toHaveText(/^verify: [\d,]+ rows in 8 buckets · [\d,]+ rows\/s · (under 1s|\d+[smh])/);
  await expect(card.getByTestId('eta')).toHaveText(/^(under 1s|\d+[smh])/);
  await expect(card.getByTestId('card-accuracy')).toHaveText(/^(99\.9\d|100\.00)%$/);
  await onlyGatedRamps();
  await shot(pm, 'overview-1400-verifying');
  await select(8, 15);
  expect(await act('Verify')).toBe('8 verification jobs queued');
  await inPhase('verified', 16, 600_000);
  const accuracies = await engineer.getByTestId('bucket-accuracy').allTextContents();
  expect(accuracies).toHaveLength(16);
  for (const a of accuracies) expect(num(a)).toBeGreaterThanOrEqual(99.9);
  await shot(engineer, 'migration-1400-verified');

  // The PM's card: every bucket verified, 100%, accurate, nothing blocks
  // but the gated client ramps, no time left.
  await cardPhases({ verified: 16 }, 60_000);
  await expect(card.getByTestId('progress')).toHaveText('100.0%');
  await expect(card.getByTestId('card-accuracy')).toHaveText(/^(99\.9\d|100\.00)%$/);
  await expect(card.getByTestId('eta')).toHaveText('done');
  await expect(card.getByTestId('stages')).toHaveCount(0);
  await onlyGatedRamps();
  // Accuracy over time, one line per table, with what it means.
  await expect(card.getByTestId('accuracy-line')).toHaveCount(2);
  await expect(card.getByTestId('accuracy-legend-item')).toHaveText([/^contacts (99\.9\d|100\.00)%$/, /^messages (99\.9\d|100\.00)%$/]);
  await expect(card.getByTestId('accuracy-meaning')).toContainText('One line per table');
  await shot(pm, 'overview-1400-verified');

  // A bucket's page, and its row detail without Tern's own columns.
  await engineer.getByTestId('bucket-row').first().getByRole('link').first().click();
  await expect(engineer).toHaveURL(/\/buckets\/0$/);
  await expect(engineer.locator('body')).not.toContainText('_tern_source_key');
  await shot(engineer, 'bucket-1400');

  // The end of the playbook on the demo itself: the reverse relay, then one
  // bucket of each table switched to the new store while the live writer
  // keeps writing (to the new store now, for those buckets' keys: it honours
  // the write primary), one rolled back; the stores never drift apart.
  await engineer.goto('/migrations/1');
  await hydrated(engineer);
  const panel = engineer.getByTestId('switch-panel');
  await panel.getByTestId('start-reverse-relay').click();
  await expect(panel.getByText('contacts: reversible')).toBeVisible({ timeout: 60_000 });
  await expect(panel.getByText('messages: reversible')).toBeVisible();
  const reverseJob = engineer.getByTestId('job-row').filter({ hasText: 'reverse-relay' });
  await expect(reverseJob.getByTestId('job-state')).toHaveText('running', { timeout: 60_000 });
  await select(0, 0);
  await engineer.getByRole('checkbox', { name: 'select bucket 8', exact: true }).check();
  await expect(selected).toHaveText('2 selected');
  await panel.getByTestId('switch-selected').click();
  await expect(panel.getByTestId('switch-result')).toHaveText(/^switch of bucket\(s\) 0, 8 done: writes held \d+ ms/, { timeout: 60_000 });
  await expect(panel.getByTestId('switched-buckets')).toHaveText('0, 8');
  // The writer's changes to those keys reach the old store through the
  // reverse relay.
  await expect(reverseJob).toContainText(/reverse: [1-9]\d* changes, [1-9]\d* keys applied/, { timeout: 60_000 });
  // The drift watch re-verifies both switched buckets at once: no drift.
  const verifyDone = engineer
    .locator('[data-testid=job-row][data-state=succeeded]')
    .filter({ has: engineer.locator('td:nth-child(2)', { hasText: /^verify$/ }) });
  await expect(verifyDone).toHaveCount(16 + 2, { timeout: 120_000 });
  await expect(panel.getByTestId('drifted-buckets')).toHaveText('none');
  await expect(pm.getByTestId('source-of-truth-row').filter({ hasText: 'messages-demo' }))
    .toContainText(/— 2 of 16 buckets write to the new store; last hold \d+ ms/, { timeout: 30_000 });
  await shot(engineer, 'migration-1400-demo-switched');
  // Roll bucket 8 back: its writes go to the old store again.
  await select(8, 8);
  await panel.getByTestId('rollback-selected').click();
  await expect(panel.getByTestId('switch-result')).toHaveText(/^rollback of bucket\(s\) 8 done: writes held \d+ ms/, { timeout: 60_000 });
  await expect(panel.getByTestId('switched-buckets')).toHaveText('0');
  await expect(panel.getByTestId('drifted-buckets')).toHaveText('none');
  // The one refusal above answers 409, which the browser logs as a failed
  // resource; nothing else may fail.
  expect(errors.filter((e) => !/status of 409 \(Conflict\)/.test(e))).toEqual([]);
  expect(pmErrors).toEqual([]);
});

test('the client owner reads their client and its guide, with no link to pages they may not open', async ({ browser }) => {
  const owner = await signedInPage(browser, 'owner');
  await expect(owner.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Data fixes' })).toHaveCount(0);
  await owner.getByRole('link', { name: 'Clients' }).click();
  await owner.getByRole('link', { name: 'inbox-service' }).first().click();
  const guide = owner.getByTestId('guide');
  // The guide comes first and its code names this client.
  await expect(guide.locator('pre code').first()).toContainText('"inbox-service"');
  const guideTop = (await guide.boundingBox())?.y ?? 0;
  const chartTop = (await owner.getByTestId('traffic-chart').boundingBox())?.y ?? 0;
  expect(guideTop).toBeLessThan(chartTop);
  await shot(owner, 'client-1400');

  // Another client's guide names that client instead.
  const engineer = await signedInPage(browser, 'engineer');
  await engineer.getByRole('link', { name: 'Clients' }).click();
  await engineer.getByRole('link', { name: 'search-api' }).first().click();
  await expect(engineer.getByTestId('guide').locator('pre code').first()).toContainText('"search-api"');
  await engineer.goto('/migrations/1/guide');
  await expect(engineer.getByTestId('guide')).toBeVisible();
  await shot(engineer, 'guide-1400');
});

test('the sign-in page loads no WebAssembly', async ({ page }) => {
  const wasm: string[] = [];
  page.on('request', (r) => {
    if (r.url().endsWith('.wasm')) wasm.push(r.url());
  });
  const failed: string[] = [];
  page.on('requestfailed', (r) => failed.push(`${r.url()} ${r.failure()?.errorText}`));
  await signIn(page, 'pm');
  expect(wasm.filter((u) => u.includes('/login'))).toEqual([]);
  await page.goto('/login');
  await page.waitForLoadState('networkidle');
  // Leaving the overview aborts its own wasm download; count from here.
  failed.length = 0;
  const before = wasm.length;
  await page.goto('/login');
  await page.waitForLoadState('networkidle');
  expect(wasm.length, 'the sign-in page fetched wasm').toBe(before);
  expect(failed.filter((f) => f.includes('tern_bg.wasm'))).toEqual([]);
});

test('every page fits a 390 px phone without sideways scroll', async ({ browser }) => {
  test.setTimeout(3 * 60_000);
  const engineer = await signedInPage(browser, 'engineer', PHONE);
  // A data fix of its own (on the demo's source, selecting nothing), so
  // the fix page is there to look at whatever ran before.
  await engineer.goto('/fixes');
  await hydrated(engineer);
  await engineer.getByTestId('fix-spec').fill(`name = "phone-${Date.now()}"
description = "Selects nothing: a fix page to look at on a phone"
url = "sqlite://${demoDir}/source.db"
key = ["id"]

[filter]
sql = "SELECT id, full_name FROM contacts WHERE id < 0"

[mapper]
kind = "update"
table = "contacts"
set = { full_name = "full_name" }
`);
  await engineer.getByTestId('fix-create').click();
  await expect(engineer.getByTestId('fix-name')).toContainText('phone-');
  await expect(engineer).toHaveURL(/\/fixes\/\d+$/);
  const fix = new URL(engineer.url()).pathname;

  const pages: [string, string][] = [
    ['overview', '/'],
    ['new-migration', '/migrations/new'],
    ['migration', '/migrations/1'],
    ['bucket', '/migrations/1/buckets/0'],
    ['clients', '/clients'],
    ['client', '/clients/1'],
    ['migration-clients', '/migrations/1/clients'],
    ['guide', '/migrations/1/guide'],
    ['offline', '/migrations/1/offline'],
    ['decommission', '/migrations/1/decommission'],
    ['audit', '/audit'],
    ['fixes', '/fixes'],
    ['fix', fix],
  ];
  const shown = ['overview', 'migration', 'bucket', 'client', 'guide', 'fix', 'decommission'];
  for (const [name, url] of pages) {
    await engineer.goto(url);
    await expect(engineer.getByTestId('user-role')).toBeVisible();
    await hydrated(engineer);
    await expectNoSidewaysScroll(engineer);
    if (shown.includes(name)) await shot(engineer, `${name}-390`);
  }
  // Row detail expanded on a phone stays inside its box.
  await engineer.goto('/migrations/1/buckets/0');
  const details = engineer.locator('details').first();
  if (await details.count()) {
    await details.locator('summary').click();
    await expectNoSidewaysScroll(engineer);
  }
  // The admin's own pages.
  const admin = await signedInPage(browser, 'admin', PHONE);
  for (const url of ['/admin/users', '/admin/connections']) {
    await admin.goto(url);
    await expect(admin.getByTestId('user-role')).toBeVisible();
    await hydrated(admin);
    await expectNoSidewaysScroll(admin);
  }
  await shot(admin, 'connections-390');
  const owner = await signedInPage(browser, 'owner', PHONE);
  await expectNoSidewaysScroll(owner);
  await owner.goto('/clients');
  await expectNoSidewaysScroll(owner);
  // And the sign-in page, signed out.
  const visitor = await (await browser.newContext({ viewport: PHONE })).newPage();
  await visitor.goto('/login');
  await expect(visitor.getByLabel('Username')).toBeVisible();
  await expectNoSidewaysScroll(visitor);
});
