import { expect, Page } from '@playwright/test';

export const PASSWORD = 'demo-password-e2e';

/** Signs in through the form and waits for the overview. */
export async function signIn(page: Page, username: string): Promise<void> {
  await page.goto('/login');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('user-role')).toBeVisible();
}

/** Waits until the page's WebAssembly has hydrated it. */
export async function hydrated(page: Page): Promise<void> {
  await page.waitForFunction(() => {
    const entries = performance.getEntriesByType('resource') as PerformanceResourceTiming[];
    return entries.some((e) => e.name.endsWith('/pkg/tern_bg.wasm') && e.responseEnd > 0);
  });
  // The wasm module is fetched; give hydration its turn on the event loop.
  await page.waitForTimeout(300);
}

/** Collects console errors so a test can assert there were none. */
export function consoleErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(err.message));
  return errors;
}
