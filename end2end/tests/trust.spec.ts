import { expect, test } from '@playwright/test';
import { hydrated, signIn } from './helpers';

// The trust boundary as people meet it: a client owner sees the overview and
// their own client (inbox-service) and nothing of specs, fixes or other
// clients; an admin registers a connection whose password is never shown.

test('a client owner sees their own client but no specs, fixes or other clients', async ({ page }) => {
  await signIn(page, 'owner');
  const nav = page.getByRole('navigation', { name: 'main' });
  await expect(nav.getByRole('link', { name: 'Clients' })).toBeVisible();
  await expect(nav.getByRole('link', { name: 'Data fixes' })).toHaveCount(0);
  await expect(nav.getByRole('link', { name: 'Audit log' })).toHaveCount(0);

  // Their clients list holds only their client.
  await nav.getByRole('link', { name: 'Clients' }).click();
  await expect(page.getByTestId('client-row')).toHaveCount(1);
  await expect(page.getByTestId('client-row').first()).toContainText('inbox-service');
  await page.getByTestId('client-row').first().getByRole('link', { name: 'inbox-service' }).click();
  await expect(page.getByTestId('client-ramp')).toContainText('25%');
  const ownUrl = page.url();

  // Typed addresses are refused by the server, with a page that says why.
  for (const path of ['/fixes', '/migrations/1', '/migrations/1/buckets/0', '/audit']) {
    const res = await page.goto(path);
    expect(res?.status(), path).toBe(403);
    await expect(page.getByTestId('forbidden')).toContainText('viewer, engineer or admin');
  }
  const api = await page.request.get('/api/v1/migrations/1');
  expect(api.status()).toBe(403);
  const fixes = await page.request.get('/api/v1/fixes');
  expect(fixes.status()).toBe(403);

  // Another client's page is refused too.
  const own = Number(ownUrl.split('/').pop());
  const others = (await (await page.request.get('/api/v1/clients')).json()) as { id: number }[];
  expect(others.map((c) => c.id)).toEqual([own]);
  for (const id of [own + 1, own + 2]) {
    const res = await page.goto(`/clients/${id}`);
    expect(res?.status(), `client ${id}`).toBe(403);
  }
});

test('an admin registers a connection; its password is stored but never shown', async ({ page }) => {
  const password = 'pw-never-shown-4242';
  await signIn(page, 'admin');
  await page.getByRole('link', { name: 'Connections' }).click();
  await expect(page).toHaveURL(/\/admin\/connections$/);
  await hydrated(page);

  await page.getByTestId('connection-name').fill('legacy-inbox');
  await page.getByLabel('Kind').selectOption('postgres');
  await page.getByLabel('Host').fill('db.internal');
  await page.getByLabel('Port').fill('5432');
  await page.getByLabel('Database (file path for sqlite)').fill('inbox');
  await page.getByLabel('User', { exact: true }).fill('app');
  await page.getByTestId('connection-secret').fill(password);
  await page.getByTestId('connection-save').click();
  await expect(page.getByTestId('connection-saved')).toContainText('legacy-inbox');

  const row = page.getByTestId('connection-row').filter({ hasText: 'legacy-inbox' });
  await expect(row.getByTestId('connection-secret-state')).toHaveText('set (encrypted)');
  await page.reload();
  await expect(page.getByTestId('connection-row').filter({ hasText: 'legacy-inbox' })).toBeVisible();
  expect(await page.content()).not.toContain(password);
  const listed = await (await page.request.get('/api/v1/connections')).text();
  expect(listed).toContain('legacy-inbox');
  expect(listed).not.toContain(password);
  const audit = await (await page.request.get('/api/v1/audit?action=connection.')).text();
  expect(audit).toContain('legacy-inbox');
  expect(audit).not.toContain(password);

  // An engineer may read the names but not change them.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await signIn(page, 'engineer');
  const res = await page.goto('/admin/connections');
  expect(res?.status()).toBe(403);
});
