import { execFileSync } from 'node:child_process';
import { Browser, expect, Page } from '@playwright/test';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export const PASSWORD = 'demo-password-e2e';

/** The demo's data directory (see playwright.config.ts). */
export const demoDir = path.join(os.tmpdir(), `tern-e2e-${Number(process.env.TERN_E2E_PORT ?? 3100)}`, 'demo');

/** The window the wide screenshots and checks use. */
export const WIDE = { width: 1400, height: 1000 };

/** Signs in through the form and waits for the overview. */
export async function signIn(page: Page, username: string): Promise<void> {
  await page.goto('/login');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('user-role')).toBeVisible();
}

/** A page in a browser context of its own (its own cookies), signed in. */
export async function signedInPage(browser: Browser, user: string, viewport = WIDE): Promise<Page> {
  const page = await (await browser.newContext({ viewport })).newPage();
  await signIn(page, user);
  return page;
}

/** Waits until the page's WebAssembly has hydrated it (the front end marks
 * `<html data-hydrated>` once its controls answer). */
export async function hydrated(page: Page): Promise<void> {
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached', timeout: 60_000 });
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

/** A full-page screenshot in end2end/screenshots/ (ignored by git). */
export async function shot(page: Page, name: string): Promise<void> {
  const shots = path.resolve(__dirname, '../screenshots');
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

/** Runs SQL with psql in a database of the local PostgreSQL server. */
export const psql = (database: string, sql: string) =>
  execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-qd', database, '-c', sql]);

/** A spec of the demo's contacts from the database at `source` to the one
 * at `target` (URLs): four buckets by member, the email trimmed and
 * lower-cased; `more` follows the mapping (more columns, sections). */
export function contactsSpec(source: string, target: string, more = ''): string {
  return `chunk_rows = 500
[source]
url = "${source}"
[target]
url = "${target}"

[[tables]]
name = "contacts"
key = ["id"]
buckets = 4
[tables.source]
table = "contacts"
key = ["member_id", "id"]
bucket = "member_id"
[tables.columns]
id = "id"
member_id = "member_id"
email = { from = "email", trim = true, lower = true }
full_name = "full_name"
${more}`;
}

/** Bucket indexes `from`..`to`, inclusive. */
export const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** The bucket table's actions on a migration page: selecting buckets, and
 * pressing an action on them and reading its answer. */
export function bucketActions(page: Page) {
  const all = page.getByRole('checkbox', { name: 'select all buckets' });
  const selected = page.getByTestId('bucket-actions').getByText(/\d+ selected/);
  const answer = page.getByTestId('action-result').or(page.getByTestId('action-error'));
  /** From no selection: the header box selects all listed, then none. */
  const clear = async () => {
    await all.check();
    await all.uncheck();
    await expect(selected).toHaveText('0 selected');
  };
  return {
    selected,
    /** Selects exactly these buckets (by index). */
    select: async (...idx: number[]) => {
      await clear();
      for (const i of idx) await page.getByRole('checkbox', { name: `select bucket ${i}`, exact: true }).check();
      await expect(selected).toHaveText(`${idx.length} selected`);
    },
    /** Selects every listed bucket, `count` of them. */
    selectAll: async (count: number) => {
      await clear();
      await all.check();
      await expect(selected).toHaveText(`${count} selected`);
    },
    /** Presses an action on the selected buckets and returns its answer (the
     * previous answer dismissed first, so this one cannot be mistaken for it). */
    act: async (label: string): Promise<string> => {
      await page.getByTestId('action-dismiss').click({ timeout: 2_000 }).catch(() => {});
      await expect(answer).toHaveCount(0);
      await page.getByTestId('bucket-actions').getByRole('button', { name: label, exact: true }).click();
      await expect(answer).toBeVisible();
      return (await answer.textContent()) ?? '';
    },
  };
}
