import { defineConfig } from '@playwright/test';
import * as os from 'os';
import * as path from 'path';

// The browser tests run `tern demo` (built by `cargo xtask test`, which sets
// TERN_BIN and TERN_SITE_ROOT) on its own port and data directory, and drive
// Debian's Chromium: Playwright never downloads a browser here.
const port = Number(process.env.TERN_E2E_PORT ?? 3100);
const bin = process.env.TERN_BIN ?? path.resolve(__dirname, '../target/debug/tern');
const siteRoot = process.env.TERN_SITE_ROOT ?? path.resolve(__dirname, '../target/site');
const dataDir = path.join(os.tmpdir(), `tern-e2e-${port}`);
// TERN_E2E_STORE runs the suite on an empty PostgreSQL control store (the
// demo's `--store`) instead of the demo's embedded SQLite one.
const store = process.env.TERN_E2E_STORE;
export const DEMO_PASSWORD = 'demo-password-e2e';

export default defineConfig({
  testDir: './tests',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [['list'], ['html', { open: 'never', outputFolder: 'playwright-report' }]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
  webServer: {
    command: `"${bin}" demo --listen 127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}/readyz`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: 'ignore',
    stderr: 'pipe',
    env: {
      TERN_DATA_DIR: dataDir,
      TERN_SITE_ROOT: siteRoot,
      TERN_DEMO_PASSWORD: DEMO_PASSWORD,
      TERN_LOG: 'warn',
      ...(store ? { TERN_DEMO_STORE: store } : {}),
    },
  },
});
