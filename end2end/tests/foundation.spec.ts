import { expect, test } from '@playwright/test';
import { consoleErrors, hydrated, signIn } from './helpers';

const roles = [
  { username: 'admin', role: 'admin', canSeeUsers: true, canSeeAudit: true },
  { username: 'engineer', role: 'engineer', canSeeUsers: false, canSeeAudit: true },
  { username: 'pm', role: 'viewer', canSeeUsers: false, canSeeAudit: true },
  { username: 'owner', role: 'client-owner', canSeeUsers: false, canSeeAudit: false },
];

for (const r of roles) {
  test(`${r.username} signs in, sees the overview and signs out`, async ({ page }) => {
    const errors = consoleErrors(page);
    await signIn(page, r.username);

    await expect(page).toHaveURL(/\/$/);
    await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
    await expect(page.getByTestId('user-role')).toHaveText(r.role);
    await expect(page.getByTestId('migration-card')).toContainText('messages-demo');
    await expect(page.getByRole('link', { name: 'Users' })).toHaveCount(r.canSeeUsers ? 1 : 0);
    await expect(page.getByRole('link', { name: 'Audit log' })).toHaveCount(r.canSeeAudit ? 1 : 0);

    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect(page).toHaveURL(/\/login\?signed_out=1/);
    await page.goto('/');
    await expect(page).toHaveURL(/\/login\?next=/);
    expect(errors).toEqual([]);
  });
}

test('a page above the role shows 403', async ({ page }) => {
  await signIn(page, 'pm');
  const response = await page.goto('/admin/users');
  expect(response?.status()).toBe(403);
  await expect(page.getByTestId('forbidden')).toContainText('needs the admin role');

  await signIn(page, 'owner');
  const audit = await page.goto('/audit');
  expect(audit?.status()).toBe(403);
  await expect(page.getByTestId('forbidden')).toBeVisible();
});

test('an unknown address shows the 404 page', async ({ page }) => {
  await signIn(page, 'pm');
  const response = await page.goto('/no/such/page');
  expect(response?.status()).toBe(404);
  await expect(page.getByTestId('not-found')).toBeVisible();
});

test('a wrong password is refused with a message', async ({ page }) => {
  await page.goto('/login');
  await page.getByLabel('Username').fill('pm');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('login-error')).toContainText('Wrong username or password');
});

test('the page hydrates: the audit filter responds without a reload', async ({ page }) => {
  const errors = consoleErrors(page);
  await signIn(page, 'engineer');
  await page.goto('/audit');
  await hydrated(page);
  const count = page.getByTestId('audit-count');
  await expect(count).toHaveText(/^(\d+) of \1 events$/);
  const all = await page.getByTestId('audit-row').count();
  expect(all).toBeGreaterThanOrEqual(5);

  // A marker on window survives only if the page is not reloaded.
  await page.evaluate(() => ((window as unknown as { __marker: number }).__marker = 42));
  await page.getByTestId('audit-quick-filter').fill('migration.create');

  await expect(page.getByTestId('audit-row')).toHaveCount(1);
  await expect(count).toHaveText(`1 of ${all} events`);
  expect(await page.evaluate(() => (window as unknown as { __marker?: number }).__marker)).toBe(42);
  expect(errors).toEqual([]);
});

test('an admin adds a user and sees it listed without a reload', async ({ page }) => {
  const errors = consoleErrors(page);
  await signIn(page, 'admin');
  await page.goto('/admin/users');
  await hydrated(page);
  await expect(page.getByTestId('user-row')).toHaveCount(4);
  await page.evaluate(() => ((window as unknown as { __marker: number }).__marker = 7));

  await page.getByLabel('Username').fill('pm.zoe');
  await page.getByLabel('Display name').fill('Zoe Planner');
  await page.getByLabel('Password').fill('a long password');
  await page.getByRole('button', { name: 'Add user' }).click();

  await expect(page.getByTestId('user-created')).toHaveText('Added pm.zoe.');
  await expect(page.getByTestId('user-row')).toHaveCount(5);
  expect(await page.evaluate(() => (window as unknown as { __marker?: number }).__marker)).toBe(7);

  await page.goto('/audit?action=user.create');
  await expect(page.getByTestId('audit-row').first()).toContainText('pm.zoe');
  expect(errors).toEqual([]);
});
