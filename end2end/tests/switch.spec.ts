import { execFileSync } from 'node:child_process';
import { expect, Page, test } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';
import { bucketActions, consoleErrors, contactsSpec, demoDir, hydrated, shot, signedInPage } from './helpers';

// The end of the playbook (issue 17) in the browser: an engineer takes a
// SQLite → SQLite migration of the demo's contacts to verified, switches
// two buckets' source of truth to the new store, sees a write made to the
// new store replicated back to the old one and each switch's hold time,
// rolls one bucket back, switches the rest; an admin runs the decommission
// steps; the program manager's overview says the migration is complete.
//
// The migration has its own old store (a copy of the demo's contacts
// table, made with the sqlite3 shell) rather than the demo's `source.db`:
// decommissioning removes every capture object from the old store and
// makes its tables read-only, which would stop the demo's own migration and
// its live writer for every test after this one. Its mapping is the demo
// spec's contacts mapping, `[tables.reverse]` section included (the email
// is trimmed and lower-cased on the way in, so it does not invert alone;
// rows go back by the old table's primary key, which an upsert needs).

const stamp = Date.now();
const oldStore = path.join(demoDir, `switch-old-${stamp}.db`);
const newStore = path.join(demoDir, `switch-new-${stamp}.db`);
const name = `switch-${stamp}`;

/** Runs SQL in a SQLite file with the sqlite3 shell (waiting out Tern's
 * own writers); throws with the shell's error when SQLite refuses. */
const sqlite = (file: string, sql: string): string =>
  execFileSync('sqlite3', ['-cmd', '.timeout 10000', file, sql], { stdio: ['ignore', 'pipe', 'pipe'] })
    .toString()
    .trim();

const spec = (): string =>
  contactsSpec(
    `sqlite://${oldStore}`,
    `sqlite://${newStore}?mode=rwc`,
    `source = "source"
updated_at = "updated_at"
[tables.reverse]
key = ["id"]
[tables.reverse.columns]
id = "id"
member_id = "member_id"
email = "email"
full_name = "full_name"
source = "source"
updated_at = "updated_at"
`,
  );

/** Each phase pill of the bucket table reads on one line (at 1,400 px the
 * table has the room; a pill broken inside its word is a cramped table). */
async function pillsOnOneLine(page: Page): Promise<void> {
  const lines = await page.getByTestId('bucket-phase').evaluateAll((els) =>
    els.map((e) => {
      const r = document.createRange();
      r.selectNodeContents(e);
      return [e.textContent ?? '', r.getClientRects().length] as [string, number];
    }),
  );
  expect(lines.length).toBeGreaterThan(0);
  for (const [phase, n] of lines) expect(n, `the pill "${phase}" wraps onto ${n} lines`).toBe(1);
}

test.beforeAll(() => {
  // The demo's contacts, smaller: old members own more rows.
  sqlite(
    oldStore,
    `CREATE TABLE contacts (
       id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, email TEXT NOT NULL,
       full_name TEXT, source TEXT NOT NULL, updated_at TEXT NOT NULL);
     CREATE INDEX contacts_by_member ON contacts (member_id, id);
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)
     INSERT INTO contacts
     SELECT i, 1 + ((i % 997) * (i % 997)) * 500 / (997 * 997), '  Person.' || i || '@Example.COM ',
            'Person ' || i, 'mobile', datetime('2018-01-01', '+' || (i % 2000) || ' days')
     FROM n;`,
  );
});

test.afterAll(() => {
  for (const f of [oldStore, newStore]) {
    for (const suffix of ['', '-wal', '-shm']) fs.rmSync(f + suffix, { force: true });
  }
});

test('an engineer switches buckets to the new store and rolls one back; after decommission the PM sees the migration complete', async ({ browser }) => {
  test.setTimeout(6 * 60_000);
  const engineer = await signedInPage(browser, 'engineer');
  const errors = consoleErrors(engineer);

  // The engineer creates the migration from its spec.
  await engineer.getByTestId('new-migration').click();
  await hydrated(engineer);
  await engineer.getByTestId('migration-name-input').fill(name);
  await engineer.getByTestId('spec-input').fill(spec());
  await engineer.getByTestId('create').click();
  await expect(engineer).toHaveURL(/\/migrations\/\d+$/);
  const id = Number(/\/migrations\/(\d+)$/.exec(engineer.url())?.[1]);
  await expect(engineer.getByTestId('bucket-row')).toHaveCount(4);
  await hydrated(engineer);

  const rows = engineer.getByTestId('bucket-row');
  const inPhase = (phase: string, count: number) =>
    expect(engineer.locator(`[data-testid=bucket-row][data-phase=${phase}]`)).toHaveCount(count, { timeout: 120_000 });
  const { select, act } = bucketActions(engineer);

  // Planned to verified: capture, load, relay every key, catch up, verify.
  await engineer.getByTestId('install-capture').click();
  await expect(engineer.getByTestId('capture-result')).toContainText('change capture installed');
  await select(0, 1, 2, 3);
  expect(await act('Bulk load')).toBe('4 bulk-load jobs queued');
  await inPhase('loaded', 4);
  await engineer.getByTestId('relay-input').fill('100%');
  await engineer.getByTestId('relay-set').click();
  await expect(engineer.getByTestId('relay-ramp')).toHaveText('100%');
  await expect(engineer.locator('[data-testid=bucket-row][data-dual-write=true]')).toHaveCount(4, { timeout: 60_000 });
  await select(0, 1, 2, 3);
  expect(await act('Catch up')).toBe('4 catch-up jobs queued');
  await inPhase('caught-up', 4);
  await select(0, 1, 2, 3);
  expect(await act('Verify')).toBe('4 verification jobs queued');
  await inPhase('verified', 4);
  for (const a of await engineer.getByTestId('bucket-accuracy').allTextContents()) expect(a).toBe('100.00%');

  // The switch is gated: without the reverse relay the old store would
  // fall behind, and the refusal says so and what to do.
  const panel = engineer.getByTestId('switch-panel');
  const switched = panel.getByTestId('switched-buckets');
  const result = panel.getByTestId('switch-result');
  const refused = panel.getByTestId('switch-refused');
  await expect(switched).toHaveText('none');
  await select(0, 1);
  await panel.getByTestId('switch-selected').click();
  await expect(refused).toContainText('the reverse relay is not running: start it');
  await expect(switched).toHaveText('none');

  // The reverse relay checks that the table maps back, then runs.
  await panel.getByTestId('start-reverse-relay').click();
  await expect(panel.getByText('contacts: reversible')).toBeVisible({ timeout: 60_000 });
  const reverseJob = engineer.getByTestId('job-row').filter({ hasText: 'reverse-relay' });
  await expect(reverseJob.getByTestId('job-state')).toHaveText('running', { timeout: 60_000 });

  // Switch buckets 0 and 1: writes held for a measured moment, then their
  // source of truth is the new store.
  await panel.getByTestId('switch-selected').click();
  await expect(result).toHaveText(/^switch of bucket\(s\) 0, 1 done: writes held \d+ ms, 0 of 0 active clients applied the hold$/, { timeout: 60_000 });
  await expect(refused).toHaveCount(0);
  await expect(switched).toHaveText('0, 1');
  await inPhase('switched', 2);
  const history = panel.getByTestId('switch-history');
  await expect(history.locator('tbody tr').filter({ hasText: 'switch' }).filter({ hasText: 'done' })).toHaveCount(1);
  await expect(history.getByTestId('hold-ms').first()).toHaveText(/^\d+ ms$/);

  // The drift watch re-verifies each switched bucket at once (then every
  // ten minutes): the two stores agree.
  const verified = engineer
    .locator('[data-testid=job-row][data-state=succeeded]')
    .filter({ has: engineer.locator('td:nth-child(2)', { hasText: /^verify$/ }) });
  await expect(verified).toHaveCount(4 + 2, { timeout: 60_000 });
  await expect(panel.getByTestId('drifted-buckets')).toHaveText('none');

  // An application writes a bucket-0 contact to the new store: the reverse
  // relay carries it back to the old store, and its job says so.
  const key = sqlite(newStore, 'SELECT id FROM contacts ORDER BY member_id, id LIMIT 1');
  sqlite(newStore, `UPDATE contacts SET full_name = 'Written to the new store' WHERE id = ${key}`);
  await expect
    .poll(() => sqlite(oldStore, `SELECT full_name FROM contacts WHERE id = ${key}`), { timeout: 60_000 })
    .toBe('Written to the new store');
  await expect(reverseJob).toContainText(/reverse: [1-9]\d* changes, [1-9]\d* keys applied/, { timeout: 30_000 });
  await shot(engineer, 'switch-1400-two-switched');

  // The PM sees two of four buckets on the new store and the last hold.
  const pm = await signedInPage(browser, 'pm');
  const pmErrors = consoleErrors(pm);
  const truth = pm.getByTestId('source-of-truth-row').filter({ hasText: name });
  await expect(truth).toContainText(/— 2 of 4 buckets write to the new store; last hold \d+ ms/, { timeout: 30_000 });

  // Roll bucket 1 back: its writes go to the old store again.
  await select(1);
  await panel.getByTestId('rollback-selected').click();
  await expect(result).toHaveText(/^rollback of bucket\(s\) 1 done: writes held \d+ ms/, { timeout: 60_000 });
  await expect(switched).toHaveText('0');
  await expect(rows.nth(1)).toHaveAttribute('data-phase', 'reads-switching');
  await pillsOnOneLine(engineer);
  await expect(truth).toContainText('— 1 of 4 buckets write to the new store', { timeout: 30_000 });

  // Decommission is refused while a bucket still writes to the old store.
  const admin = await signedInPage(browser, 'admin');
  const adminErrors = consoleErrors(admin);
  await admin.goto(`/migrations/${id}/decommission`);
  const steps = admin.getByTestId('decommission-steps');
  await expect(steps.getByTestId('decommission-step').first()).toContainText('bucket(s) 1, 2, 3 are not switched to the new store');
  await expect(steps.getByTestId('step-stop-relays')).toHaveCount(0);

  // The rest, bucket 1 again included.
  await select(1, 2, 3);
  await panel.getByTestId('switch-selected').click();
  await expect(result).toHaveText(/^switch of bucket\(s\) 1, 2, 3 done: writes held \d+ ms/, { timeout: 60_000 });
  await expect(switched).toHaveText('0, 1, 2, 3');
  await inPhase('switched', 4);
  await expect(history.getByTestId('hold-ms')).toHaveText([/^\d+ ms$/, /^\d+ ms$/, /^\d+ ms$/]);
  // Each bucket just switched gets a fresh drift check (a flip forgets the
  // last one), and the stores agree.
  await expect(verified).toHaveCount(4 + 2 + 3, { timeout: 60_000 });
  await expect(panel.getByTestId('drifted-buckets')).toHaveText('none');
  await shot(engineer, 'switch-1400-all-switched');

  // The admin runs the steps in order; each says what it did.
  await admin.reload();
  await hydrated(admin);
  for (const step of ['stop-relays', 'remove-capture', 'read-only', 'complete']) {
    await steps.getByTestId(`step-${step}`).click();
    await expect(steps.getByTestId(`step-${step}`)).toHaveCount(0, { timeout: 60_000 });
  }
  await expect(steps.getByTestId('decommission-step').filter({ hasText: 'read-only mode' })).toContainText('read-only: contacts');
  await expect(steps.getByTestId('decommission-step').filter({ hasText: 'Mark the migration complete' })).toContainText('done');
  await admin.reload();
  await expect(admin.getByTestId('decommission-verdict')).toHaveText('The old store can be switched off.');
  await shot(admin, 'decommission-1400-complete');
  // The old store refuses writes now.
  expect(() => sqlite(oldStore, `UPDATE contacts SET full_name = 'late' WHERE id = ${key}`)).toThrow(/read-only/);

  // The PM's overview: the migration is complete, every bucket done.
  await expect(truth).toContainText('— complete: the new store is the only store', { timeout: 30_000 });
  const card = pm.getByTestId('migration-card').filter({ hasText: name });
  await expect(card.getByTestId('phase-count')).toHaveCount(1);
  await expect(card.getByTestId('phase-count')).toHaveAttribute('data-phase', 'done');
  await expect(card.getByTestId('phase-count')).toHaveAttribute('data-count', '4');
  // Its accuracy chart: one line per table, saying what it means.
  await expect(card.getByTestId('accuracy-line')).toHaveCount(1);
  await expect(card.getByTestId('accuracy-line')).toHaveAttribute('data-table', 'contacts');
  await expect(card.getByTestId('accuracy-legend-item')).toHaveText(['contacts 100.00%']);
  await expect(card.getByTestId('accuracy-meaning')).toContainText('One line per table');
  await hydrated(pm);
  await shot(pm, 'overview-1400-switch-complete');

  // The refused switch answers 409, which the browser logs; nothing else fails.
  expect(errors.filter((e) => !/status of 409 \(Conflict\)/.test(e))).toEqual([]);
  expect(pmErrors).toEqual([]);
  expect(adminErrors).toEqual([]);
});
