import { expect, test } from '@playwright/test';
import { consoleErrors, hydrated, signIn } from './helpers';

// The demo seeds clients of `messages-demo`: inbox-service at 25% (owned by
// the demo user `owner`), search-api at 10%, notifications at 0%, a
// discovered legacy-reports, two offline jobs and a migration guide.

test('an engineer raises a client ramp from 10% to 25% and sees it in the chart and the audit log', async ({ page }) => {
  const errors = consoleErrors(page);
  await signIn(page, 'engineer');
  await page.getByRole('link', { name: 'Clients' }).click();
  await expect(page).toHaveURL(/\/clients$/);
  await page.getByRole('link', { name: 'search-api' }).click();
  await expect(page.getByTestId('client-ramp')).toContainText('10%');
  await expect(page.getByTestId('rollback')).toBeVisible();
  await hydrated(page);

  await page.getByTestId('ramp-input').fill('25%');
  await page.getByTestId('ramp-reason').fill('error rate flat for a day at 10%');
  await page.getByTestId('ramp-set').click();
  await expect(page.getByTestId('client-ramp')).toContainText('25% of reads');

  // The chart marks both ramp steps.
  const chart = page.getByTestId('traffic-chart');
  await expect(chart).toHaveAttribute('src', /traffic\.svg\?v=25/);
  const src = (await chart.getAttribute('src')) ?? '';
  const svg = await (await page.request.get(src)).text();
  expect(svg).toContain('ramp 10%');
  expect(svg).toContain('ramp 25%');
  expect(svg).toContain('new system');

  // The audit log has the change and its reason.
  await page.goto('/audit?action=ramp.');
  const row = page.getByTestId('audit-row').filter({ hasText: 'search-api' }).first();
  await expect(row).toContainText('10% → 25%');
  await expect(row).toContainText('error rate flat for a day at 10%');
  expect(errors).toEqual([]);
});

test('a client owner reads their guide and ticks a checklist item but finds no ramp control', async ({ page }) => {
  await signIn(page, 'owner');
  await page.getByRole('link', { name: 'Clients' }).click();
  const first = page.getByTestId('client-row').first();
  await expect(first).toContainText('inbox-service');
  await expect(first).toContainText('yours');
  await first.getByRole('link', { name: 'inbox-service' }).click();

  await expect(page.getByTestId('guide')).toContainText('Embed tern-client');
  await expect(page.getByTestId('guide').locator('pre code').first()).toContainText('TernClient::connect');
  await expect(page.getByTestId('client-ramp')).toContainText('25%');
  await expect(page.getByTestId('ramp-controls')).toHaveCount(0);
  await expect(page.getByTestId('rollback')).toHaveCount(0);
  await hydrated(page);

  const item = page.getByTestId('checklist-item').first();
  await item.getByRole('checkbox').check();
  await expect(page.getByTestId('checklist-item').first()).toContainText('ticked by owner');
});

test('a program manager sees which clients and offline jobs are still on the old system', async ({ page }) => {
  await signIn(page, 'pm');
  const panel = page.getByTestId('old-system');
  await expect(panel).toBeVisible();
  await expect(panel.getByTestId('old-system-row').filter({ hasText: 'notifications' })).toContainText('growth@example.com');
  await expect(panel.getByTestId('old-system-row').filter({ hasText: 'nightly-export' })).toContainText('offline job');
  await expect(panel.getByTestId('old-system-row').filter({ hasText: 'legacy-reports' })).toContainText('discovered');
});
