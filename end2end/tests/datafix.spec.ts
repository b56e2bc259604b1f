import { expect, test } from '@playwright/test';
import { consoleErrors, hydrated, psql, signIn } from './helpers';

// A members table on the local PostgreSQL server, two of whose first names are
// longer than 1,000 characters.
const db = `tern_e2e_fix_${Date.now()}`;

test.beforeAll(() => {
  psql('postgres', `CREATE DATABASE ${db}`);
  psql(
    db,
    `CREATE TABLE members (id BIGINT PRIMARY KEY, first_name TEXT NOT NULL);
     INSERT INTO members VALUES (1, 'Ann'), (2, repeat('x', 1500)), (3, 'Bob'), (4, repeat('y', 1200));`,
  );
});

test.afterAll(() => {
  psql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
});

test('an engineer creates the seed fix from the template, dry-runs it and runs it', async ({ page }) => {
  const errors = consoleErrors(page);
  await signIn(page, 'engineer');
  await page.getByRole('link', { name: 'Data fixes' }).click();
  await hydrated(page);

  const spec = page.getByTestId('fix-spec');
  await expect(spec).toHaveValue(/truncate\(first_name, 1000\)/);
  const text = (await spec.inputValue())
    .replace('name = "truncate-long-first-names"', `name = "e2e-${Date.now()}"`)
    .replace(/# url = ".*"/, `url = "postgres://postgres@127.0.0.1:5432/${db}"`);
  await spec.fill(text);
  await page.getByTestId('fix-create').click();

  await expect(page.getByTestId('fix-name')).toContainText('e2e-');
  await hydrated(page);
  await page.getByTestId('fix-dry-run').click();
  const rows = page.getByTestId('dry-row');
  await expect(rows).toHaveCount(2);
  await expect(rows.first()).toContainText('(2)');
  await expect(rows.first()).toContainText('1500 characters');
  await expect(rows.first()).toContainText('1000 characters');

  await page.getByTestId('fix-run').click();
  await expect(page.getByTestId('fix-run-state').first()).toHaveText('succeeded', { timeout: 30_000 });
  await expect(page.getByTestId('fix-run-changed').first()).toHaveText('2');
  expect(errors).toEqual([]);
});
