import { expect, test } from '@playwright/test';
import { consoleErrors, contactsSpec, demoDir, hydrated, PASSWORD, psql, signIn } from './helpers';

// The demo's SQLite source is the source of the migration this journey creates.
const journeySpec = (target: string): string =>
  contactsSpec(`sqlite://${demoDir}/source.db`, `sqlite://${target}?mode=rwc`);

test('an engineer creates a migration from a spec and watches a throttled bulk load move without reloading', async ({ page }) => {
  const errors = consoleErrors(page);
  await signIn(page, 'engineer');
  await page.getByTestId('new-migration').click();
  await expect(page).toHaveURL(/\/migrations\/new$/);
  await hydrated(page);

  // A mistake in the spec is shown with its line.
  await page.getByTestId('migration-name-input').fill(`journey-${Date.now()}`);
  await page.getByTestId('spec-input').fill(journeySpec(`${demoDir}/journey.db`).replace('buckets = 4', 'buckets = "four"'));
  await page.getByTestId('preview').click();
  await expect(page.getByTestId('spec-error')).toContainText('line');
  await expect(page.getByTestId('spec-error')).toContainText('buckets = "four"');
  // The browser logs the refused request (422); that one is expected.
  expect(errors.splice(0).every((e) => e.includes('status of 422'))).toBe(true);

  // The right spec previews its buckets, then creates the migration.
  await page.getByTestId('spec-input').fill(journeySpec(`${demoDir}/journey-${Date.now()}.db`));
  await page.getByTestId('preview').click();
  await expect(page.getByTestId('planned-bucket')).toHaveCount(4);
  await page.getByTestId('create').click();
  await expect(page).toHaveURL(/\/migrations\/\d+$/);
  await expect(page.getByTestId('bucket-row')).toHaveCount(4);
  await hydrated(page);

  // Throttle new jobs so that the progress can be watched.
  await page.getByLabel('Rate limit for new jobs (rows/s, blank = none)').fill('4000');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await expect(page.getByLabel('Rate limit for new jobs (rows/s, blank = none)')).toHaveValue('4000');

  await page.evaluate(() => ((window as unknown as { __marker: number }).__marker = 1));
  await page.getByLabel('select bucket 0').check();
  await page.getByLabel('select bucket 1').check();
  await page.getByTestId('bucket-actions').getByRole('button', { name: 'Bulk load' }).click();
  await expect(page.getByTestId('action-result')).toHaveText('2 bulk-load jobs queued');

  // Progress moves without reloading: rows copied grow while the phase is bulk-loading.
  const first = page.getByTestId('bucket-row').first();
  await expect(first.getByTestId('bucket-phase')).toHaveText('bulk-loading');
  const rowsText = async () => (await first.getByTestId('bucket-rows').textContent()) ?? '';
  const before = await rowsText();
  await expect.poll(rowsText, { timeout: 20_000 }).not.toBe(before);
  await expect(first.getByTestId('bucket-phase')).toHaveText('loaded', { timeout: 30_000 });
  await expect(page.getByTestId('bucket-row').nth(1).getByTestId('bucket-phase')).toHaveText('loaded', { timeout: 30_000 });
  await expect(page.getByTestId('bucket-row').nth(2).getByTestId('bucket-phase')).toHaveText('planned');
  expect(await page.evaluate(() => (window as unknown as { __marker?: number }).__marker)).toBe(1);
  expect(errors).toEqual([]);
});

test('a viewer sees the migration page without actions and the API refuses their POST', async ({ page, request }) => {
  await signIn(page, 'pm');
  await page.goto('/migrations/1');
  await expect(page.getByTestId('bucket-row')).toHaveCount(16);
  await expect(page.getByTestId('bucket-actions')).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Save settings' })).toHaveCount(0);

  // A script's session (its own cookie jar), with its CSRF token: refused for the role.
  const session = await request.post('/api/v1/session', { data: { username: 'pm', password: PASSWORD } });
  const token = (await session.json()).csrf_token as string;
  const refused = await request.post('/api/v1/migrations/1/actions', {
    headers: { 'X-CSRF-Token': token },
    data: { action: 'bulk-load', bucket_ids: [1] },
  });
  expect(refused.status()).toBe(403);
  expect((await refused.json()).error).toContain('engineer or admin');
});

// A quiet PostgreSQL source (no live writer), so verification compares a
// settled source with the target.
const pgDb = `tern_e2e_verify_${Date.now()}`;

test.describe('verification journey', () => {
  test.beforeAll(() => {
    psql('postgres', `CREATE DATABASE ${pgDb}`);
    psql('postgres', `CREATE DATABASE ${pgDb}_target`);
    psql(
      pgDb,
      `CREATE TABLE contacts (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, email TEXT NOT NULL, full_name TEXT);
       CREATE INDEX contacts_by_member ON contacts (member_id, id);
       INSERT INTO contacts SELECT i, 1 + (i * 7919) % 500, '  Person.' || i || '@Example.COM ', 'Person ' || i
       FROM generate_series(1, 4000) AS i;`,
    );
  });

  test.afterAll(() => {
    psql('postgres', `DROP DATABASE IF EXISTS ${pgDb} WITH (FORCE)`);
    psql('postgres', `DROP DATABASE IF EXISTS ${pgDb}_target WITH (FORCE)`);
  });

test('an engineer installs capture, bulk-loads, ramps the relay to every key, catches up and verifies two buckets to 100%', async ({ page }) => {
  const errors = consoleErrors(page);
  await signIn(page, 'engineer');
  await page.getByTestId('new-migration').click();
  await hydrated(page);
  await page.getByTestId('migration-name-input').fill(`verified-${Date.now()}`);
  await page.getByTestId('spec-input').fill(
    contactsSpec(`postgres://postgres@127.0.0.1:5432/${pgDb}`, `postgres://postgres@127.0.0.1:5432/${pgDb}_target`),
  );
  await page.getByTestId('create').click();
  await expect(page).toHaveURL(/\/migrations\/\d+$/);
  await expect(page.getByTestId('bucket-row')).toHaveCount(4);
  await hydrated(page);

  // Capture first: the load then takes a watermark for each bucket.
  await page.getByTestId('install-capture').click();
  await expect(page.getByTestId('capture-result')).toContainText('change capture installed on contacts');

  const row = (i: number) => page.getByTestId('bucket-row').nth(i);
  const act = async (label: string) => {
    await page.getByLabel('select bucket 0').check();
    await page.getByLabel('select bucket 1').check();
    await page.getByTestId('bucket-actions').getByRole('button', { name: label, exact: true }).click();
  };
  await act('Bulk load');
  for (const i of [0, 1]) {
    await expect(row(i).getByTestId('bucket-phase')).toHaveText('loaded', { timeout: 60_000 });
  }

  // Catching up before the relay covers the buckets is refused, with the reason.
  await act('Catch up');
  await expect(page.getByTestId('action-error')).toContainText('not dual-written');

  await page.getByTestId('relay-input').fill('100%');
  await page.getByTestId('relay-set').click();
  // (the ramp shows once the action returns and the board refreshes)
  await expect(page.getByTestId('relay-ramp')).toHaveText('100%');

  await act('Catch up');
  for (const i of [0, 1]) {
    await expect(row(i).getByTestId('bucket-phase')).toHaveText('caught-up', { timeout: 60_000 });
  }
  await act('Verify');
  for (const i of [0, 1]) {
    await expect(row(i).getByTestId('bucket-phase')).toHaveText('verified', { timeout: 60_000 });
    await expect(row(i).getByTestId('bucket-accuracy')).toHaveText('100.00%');
  }
  await expect(row(2).getByTestId('bucket-phase')).toHaveText('planned');

  // A row damaged in the target: verification finds it, and the bucket page
  // shows the row with both values in full.
  const victim = psql(`${pgDb}_target`, "SELECT id FROM contacts ORDER BY id LIMIT 1").toString().match(/\d+/)?.[0];
  psql(`${pgDb}_target`, `UPDATE contacts SET full_name = 'damaged' WHERE id = ${victim}`);
  for (const i of [0, 1]) {
    await page.getByLabel(`select bucket ${i}`).check();
  }
  await page.getByTestId('bucket-actions').getByRole('button', { name: 'Verify', exact: true }).click();
  await expect(page.locator('[data-testid=bucket-row][data-phase=caught-up]')).toHaveCount(1, { timeout: 60_000 });
  await page.locator('[data-testid=bucket-row][data-phase=caught-up] a').first().click();
  await expect(page).toHaveURL(/\/buckets\/\d+$/);
  await hydrated(page);
  await page.getByTestId('browse-mismatches').first().click();
  const mismatch = page.getByTestId('mismatch-row');
  await expect(mismatch).toHaveCount(1);
  await expect(mismatch).toContainText(`(${victim})`);
  await expect(mismatch).toContainText('full_name');
  await expect(mismatch).toContainText('damaged');
  // Repair copies that key again and re-verifies it: the bucket is verified at 100%.
  await page.getByTestId('repair-mismatches').first().click();
  await expect(page.getByTestId('repair-result')).toContainText('repair job');
  await expect(page.getByTestId('bucket-phase')).toHaveText('verified', { timeout: 60_000 });
  expect(psql(`${pgDb}_target`, `SELECT full_name FROM contacts WHERE id = ${victim}`).toString()).not.toContain('damaged');
  // The browser logs the refused catch-up (409); that one is expected.
  expect(errors.filter((e) => !e.includes('status of 409'))).toEqual([]);
});
});
