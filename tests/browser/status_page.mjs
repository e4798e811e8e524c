// The status page of `etl serve` in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core). tests/integration/test_status_page.py starts the
// server with a pipeline and an admin token, runs this script, and checks what
// it reports against the API and the sink database.
//
//   node status_page.mjs --url http://127.0.0.1:PORT --token TOKEN --pipeline KEY
//        --rows N --shots DIR --report FILE [--chromium /usr/bin/chromium]
//
// Each step asserts what a person would see; the first failure stops the script
// (exit 1) after a screenshot of the page as it was (status_page-failure.png).
// The report (JSON) lists the run ids the page started and what it showed.
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    pipeline: { type: 'string' },
    rows: { type: 'string' },
    shots: { type: 'string' },
    report: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    timeout: { type: 'string', default: '60000' },
  },
});
for (const k of ['url', 'token', 'pipeline', 'rows', 'shots', 'report']) {
  if (!opt[k]) { console.error(`status_page.mjs: --${k} is required`); process.exit(2); }
}
const BASE = opt.url.replace(/\/$/, '');
const ORIGIN = new URL(BASE).origin;
const KEY = opt.pipeline;
const ROWS = Number(opt.rows);
const TIMEOUT = Number(opt.timeout);
mkdirSync(opt.shots, { recursive: true });

const report = { steps: [], requests: [], console_errors: [], page_errors: [], external_requests: [] };
const save = () => writeFileSync(opt.report, JSON.stringify(report, null, 2));

function log(msg) { console.error(`[status_page] ${msg}`); }
function fail(msg) { throw new Error(msg); }
function check(cond, msg) { if (!cond) fail(msg); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// polls fn() until it returns something truthy; fails with desc after ms
async function until(desc, fn, ms = TIMEOUT) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try { last = await fn(); } catch (e) { last = undefined; if (Date.now() > end) fail(`${desc}: ${e.message}`); }
    if (last) return last;
    if (Date.now() > end) fail(`timed out after ${ms} ms waiting for: ${desc}`);
    await sleep(100);
  }
}

async function api(method, path) {
  const res = await fetch(BASE + path, { method, headers: { Authorization: `Bearer ${opt.token}` } });
  const text = await res.text();
  let body = text;
  try { body = JSON.parse(text); } catch { /* text */ }
  return { status: res.status, body };
}
async function runIds() {
  const r = await api('GET', `/api/runs?pipeline=${encodeURIComponent(KEY)}&limit=100`);
  check(r.status === 200, `GET /api/runs answered ${r.status}`);
  return r.body.runs.map((x) => x.id);
}

const browser = await chromium.launch({ executablePath: opt.chromium, headless: true });
let page;
let currentStep = '';
async function step(name, fn) {
  currentStep = name;
  log(name);
  const t0 = Date.now();
  await fn();
  report.steps.push({ name, ms: Date.now() - t0 });
  save();
}

function watch(p) {
  p.on('request', (req) => {
    const u = req.url();
    if (u.startsWith('data:')) return;
    report.requests.push(`${req.method()} ${u.slice(ORIGIN.length)}`);
    if (new URL(u).origin !== ORIGIN) report.external_requests.push(u);
  });
  p.on('console', (m) => { if (m.type() === 'error') report.console_errors.push(m.text()); });
  p.on('pageerror', (e) => report.page_errors.push(String(e)));
}

const card = () => page.locator(`[data-testid="pipeline"][data-key="${KEY}"]`);
const tid = (loc, id) => loc.locator(`[data-testid="${id}"]`);
const text = async (loc) => ((await loc.textContent()) || '').replace(/\s+/g, ' ').trim();
const visible = (loc) => loc.isVisible();

async function lastRun() {
  const el = tid(card(), 'last-run');
  return { id: Number(await el.getAttribute('data-run-id')), status: await el.getAttribute('data-status'),
           mode: await el.getAttribute('data-mode') };
}
async function waitFinished(id, mode) {
  await until(`the page to show run #${id} finished ok in "Last run"`, async () => {
    const l = await lastRun();
    if (l.id === id && l.status && l.status !== 'running') {
      check(l.status === 'ok', `run #${id} ended ${l.status} on the page`);
      return true;
    }
    return false;
  });
  if (mode) check((await lastRun()).mode === mode, `run #${id} shows mode ${(await lastRun()).mode}, expected ${mode}`);
  await until('the running indicator to go away', async () => !(await visible(tid(card(), 'running'))), 15000);
}
async function lastCount(name) {
  return Number(await tid(card(), 'last-counts').locator(`td[data-count="${name}"]`).getAttribute('data-value'));
}
function isPost(r) { return r.request().method() === 'POST' && r.url().includes('/runs'); }

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  watch(page);

  await step('the page loads and asks for the token', async () => {
    const res = await page.goto(BASE + '/');
    check(res.status() === 200, `GET / answered ${res.status()}`);
    check(/text\/html/.test(res.headers()['content-type'] || ''), 'GET / is not text/html');
    check((await page.title()) === 'etl status', `title is ${await page.title()}`);
    await tid(page, 'token-form').waitFor({ state: 'visible', timeout: TIMEOUT });
    check(/needs its admin token/.test(await text(tid(page, 'token-message'))), 'no "needs its admin token" message');
    check(!(await visible(page.locator('#list'))), 'the pipeline list shows without a token');
    // a real label for the input
    check(await page.getByLabel(/Token/).count() === 1, 'the token input has no label');
  });

  await step('a wrong token shows the token form again', async () => {
    await page.getByLabel(/Token/).fill('not-the-token');
    await page.getByRole('button', { name: 'Use token' }).click();
    await until('the token form to come back with "refused"', async () =>
      (await visible(tid(page, 'token-form'))) && /refused/.test(await text(tid(page, 'token-message'))));
    check(await page.evaluate(() => sessionStorage.getItem('etl.adminToken')) === null,
      'a refused token stays in sessionStorage');
    check(!(await visible(page.locator('#list'))), 'the pipeline list shows with a wrong token');
  });

  await step('the right token lists the pipeline', async () => {
    await page.getByLabel(/Token/).fill(opt.token);
    await page.getByRole('button', { name: 'Use token' }).click();
    await card().waitFor({ state: 'visible', timeout: TIMEOUT });
    check(!(await visible(tid(page, 'token-form'))), 'the token form is still up');
    check(await page.evaluate(() => sessionStorage.getItem('etl.adminToken')) === opt.token,
      'the token is not in sessionStorage');
    report.name = await text(tid(card(), 'pipeline-name'));
    report.schedule = await text(tid(card(), 'schedule'));
    report.streams = await text(tid(card(), 'streams'));
    report.first_last_run = await text(tid(card(), 'last-run'));
    check(report.name.startsWith(KEY), `the card is named ${report.name}`);
    check(await card().getByRole('heading', { name: new RegExp(KEY) }).count() === 1, 'the card has no heading');
    check(await card().getByRole('button', { name: 'Run now' }).isEnabled(), 'Run now is disabled');
  });

  await step('Run now starts a run that the page shows while it runs and when it is done', async () => {
    const posted = page.waitForResponse(isPost);
    await card().getByRole('button', { name: 'Run now' }).click();
    const res = await posted;
    check(res.status() === 202, `POST answered ${res.status()}`);
    check(/mode=incremental/.test(res.url()), `Run now posted ${res.url()}`);
    const id = (await res.json()).run_id;
    check(Number.isInteger(id), 'no run_id in the 202 answer');
    report.run_now_id = id;
    await until(`the message "Run #${id} started"`, async () =>
      new RegExp(`#${id} started`).test(await text(tid(card(), 'pipeline-message'))), 10000);
    // live progress: per-stream counts polled from the API while the run runs
    const live = tid(card(), 'running');
    await until(`the running indicator of run #${id} with live stream counts`, async () =>
      (await visible(live)) && (await live.getAttribute('data-run-id')) === String(id) &&
      (await tid(live, 'live-streams').locator('tbody tr[data-stream]').count()) > 0, 20000);
    check(await card().getByRole('button', { name: 'Run now' }).isDisabled(), 'Run now is enabled during the run');
    report.screenshot_running = join(opt.shots, 'status_page_running.png');
    await page.screenshot({ path: report.screenshot_running });
    const seen = [];
    while (await visible(live) && seen.length < 600) {
      const v = await tid(live, 'live-streams').locator('tr[data-stream] td[data-count="read"]').first()
        .getAttribute('data-value').catch(() => null);
      if (v !== null && v !== '' && seen[seen.length - 1] !== Number(v)) seen.push(Number(v));
      await sleep(200);
    }
    report.live_read_counts = seen;
    await waitFinished(id, 'incremental');
    report.run_now_read = await lastCount('read');
    report.run_now_created = await lastCount('created');
    check(report.run_now_read === ROWS, `the page shows read ${report.run_now_read}, expected ${ROWS}`);
    check(/finished: ok/.test(await text(tid(card(), 'pipeline-message'))), 'no "finished: ok" message');
  });

  await step('a run started elsewhere: Run now shows the 409 from the API', async () => {
    // right after a refresh of the list the page cannot know of the new run
    await page.waitForResponse((r) => r.url().endsWith('/api/pipelines') && r.request().method() === 'GET');
    // a full run: it reads every row again, so it lasts long enough to collide with
    const r = await api('POST', `/api/pipelines/${encodeURIComponent(KEY)}/runs?mode=full`);
    check(r.status === 202, `POST from the test answered ${r.status} ${JSON.stringify(r.body)}`);
    report.api_run_id = r.body.run_id;
    const posted = page.waitForResponse(isPost);
    await card().getByRole('button', { name: 'Run now' }).click();
    const res = await posted;
    check(res.status() === 409, `the page's POST answered ${res.status()}, expected 409`);
    const err = tid(card(), 'pipeline-error');
    await until('the 409 error in the page', async () => /already running/.test(await text(err)), 10000);
    report.conflict_error = await text(err);
    // the next list refresh finds the run and follows it
    await until(`the page to follow run #${report.api_run_id}`, async () =>
      (await tid(card(), 'running').getAttribute('data-run-id')) === String(report.api_run_id) ||
      (await lastRun()).id === report.api_run_id, 20000);
    await waitFinished(report.api_run_id);
  });

  await step('Full refresh does nothing until confirmed', async () => {
    const before = await runIds();
    const posts = () => report.requests.filter((x) => x.startsWith('POST')).length;
    const postsBefore = posts();
    const full = card().getByRole('button', { name: /Full refresh/ });
    await full.click();
    const panel = tid(card(), 'confirm-panel');
    await panel.waitFor({ state: 'visible', timeout: 5000 });
    report.confirm_text = await text(panel);
    check(report.confirm_text.includes(KEY), 'the confirmation does not name the pipeline');
    check(/re-reads everything/.test(report.confirm_text), 'the confirmation does not say it re-reads everything');
    check(await full.getAttribute('aria-expanded') === 'true', 'Full refresh is not aria-expanded');
    check(await page.evaluate(() => document.activeElement && document.activeElement.dataset.testid) === 'cancel-full',
      'the focus is not on Cancel');
    await sleep(1500);
    check(posts() === postsBefore, 'opening the confirmation posted a run');
    await panel.getByRole('button', { name: 'Cancel' }).click();
    check(!(await visible(panel)), 'Cancel left the confirmation open');
    await sleep(1000);
    check(posts() === postsBefore, 'Cancel posted a run');
    const after = await runIds();
    check(after.length === before.length, `runs went from ${before.length} to ${after.length} without a confirmation`);
    report.runs_before_confirm = after.length;

    await full.click();
    await panel.waitFor({ state: 'visible', timeout: 5000 });
    const posted = page.waitForResponse(isPost);
    await panel.getByRole('button', { name: 'Confirm full refresh' }).click();
    const res = await posted;
    check(res.status() === 202, `full refresh POST answered ${res.status()}`);
    check(/mode=full/.test(res.url()), `full refresh posted ${res.url()}`);
    check(!(await visible(panel)), 'the confirmation stays open after Confirm');
    report.full_run_id = (await res.json()).run_id;
    await waitFinished(report.full_run_id, 'full');
    report.full_read = await lastCount('read');
    check(report.full_read === ROWS, `the full refresh read ${report.full_read}, expected ${ROWS}`);
  });

  await step('recent runs with per-stream details and the run log', async () => {
    await card().getByRole('button', { name: 'Recent runs' }).click();
    const table = tid(card(), 'runs');
    await table.waitFor({ state: 'visible', timeout: 10000 });
    for (const id of [report.run_now_id, report.api_run_id, report.full_run_id]) {
      await until(`run #${id} in the recent runs`, async () =>
        (await table.locator(`tr[data-run-id="${id}"]`).count()) === 1, 10000);
    }
    check(await table.locator(`tr[data-run-id="${report.full_run_id}"]`).getAttribute('data-mode') === 'full',
      'the full refresh is not listed with mode full');
    const ids = await table.locator('tr[data-run-id]').evaluateAll((rs) => rs.map((r) => Number(r.dataset.runId)));
    check(ids.join() === [...ids].sort((a, b) => b - a).join(), `recent runs are not newest first: ${ids}`);
    await card().getByRole('button', { name: `Details of run #${report.run_now_id}` }).click();
    const details = tid(card(), 'run-details');
    const row = tid(details, 'run-streams').locator('tr[data-stream="items"]');
    await row.waitFor({ state: 'visible', timeout: 10000 });
    report.details_read = Number(await row.locator('td[data-count="read"]').getAttribute('data-value'));
    report.details_created = Number(await row.locator('td[data-count="created"]').getAttribute('data-value'));
    check(report.details_read === ROWS, `details show read ${report.details_read}`);
    const link = tid(details, 'run-log-link');
    check((await link.getAttribute('href')).startsWith(`/api/runs/${report.run_now_id}/log?pipeline=`),
      `the log link is ${await link.getAttribute('href')}`);
    await link.click();
    const logPre = tid(details, 'run-log');
    await until('the run log in the page', async () => {
      const t = await text(logPre);
      return t && !/^Loading/.test(t) ? t : false;
    }, 10000);
    report.log_excerpt = (await logPre.textContent()).slice(0, 2000);
  });

  await step('screenshots, wide and narrow', async () => {
    report.screenshot = join(opt.shots, 'status_page.png');
    await page.screenshot({ path: report.screenshot, fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(300);
    report.narrow_overflow = await page.evaluate(() =>
      document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(report.narrow_overflow <= 1, `the page is ${report.narrow_overflow}px wider than a 390px window`);
    check(await card().getByRole('button', { name: 'Run now' }).isVisible(), 'Run now is not visible when narrow');
    report.screenshot_narrow = join(opt.shots, 'status_page_narrow.png');
    await page.screenshot({ path: report.screenshot_narrow, fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step('a stored token that the server refuses brings the form back', async () => {
    await page.evaluate(() => sessionStorage.setItem('etl.adminToken', 'stale-token'));
    await page.reload();
    await until('the token form after a refused stored token', async () =>
      (await visible(tid(page, 'token-form'))) && /refused/.test(await text(tid(page, 'token-message'))), 15000);
    check(!(await visible(page.locator('#list'))), 'the list still shows with a refused token');
  });

  await step('strings from the API are shown as text, never as markup', async () => {
    // a separate page whose API answers are replaced by hostile ones
    const p2 = await context.newPage();
    watch(p2);
    const evil = '<img src=x onerror="window.__pwned=1">';
    const run = { id: 7, pipeline: evil, client: null, key: 'evil', mode: 'full', direction: 'forward',
                  triggered_by: evil, worker: evil, started_at: '2026-01-01T00:00:00.000000Z',
                  finished_at: '2026-01-01T00:00:01.000000Z', status: 'failed', error: `<b>${evil}</b>`,
                  counts: { read: 1, created: 0, updated: 0, unchanged: 0, deleted: 0, deferred: 0, failed: 1 },
                  duration_ms: 1000 };
    await p2.route('**/api/pipelines', (r) => r.fulfill({ status: 200, contentType: 'application/json',
      body: JSON.stringify({ pipelines: [{ key: 'evil', name: evil, client: evil, file: evil,
        schedule: { cron: evil, every: null, expires: null }, next_run_at: null, running: null,
        last_run: run, streams: [evil] }] }) }));
    await p2.route('**/api/pipelines/*/runs*', (r) => r.fulfill({ status: 409, contentType: 'application/json',
      body: JSON.stringify({ error: evil }) }));
    await p2.goto(BASE + '/');
    const c = p2.locator('[data-testid="pipeline"][data-key="evil"]');
    await c.waitFor({ state: 'visible', timeout: TIMEOUT });
    await c.getByRole('button', { name: 'Run now' }).click();
    await until('the hostile 409 error text', async () =>
      (await text(c.locator('[data-testid="pipeline-error"]'))).includes(evil), 10000);
    check((await text(c.locator('[data-testid="pipeline-name"]'))).includes(evil), 'the name is not shown as text');
    check((await text(c.locator('[data-testid="last-error"]'))).includes('<b>'), 'the error is not shown as text');
    check(await p2.locator('img').count() === 0, 'markup from the API became an element');
    check(await p2.evaluate(() => window.__pwned) === undefined, 'script from the API ran');
    await p2.close();
  });

  check(report.page_errors.length === 0, `JavaScript errors: ${report.page_errors.join(' | ')}`);
  check(report.external_requests.length === 0, `requests outside the server: ${report.external_requests}`);
  report.ok = true;
  save();
  log('all steps passed');
} catch (e) {
  report.ok = false;
  report.failed_step = currentStep;
  report.error = String(e && e.stack ? e.stack : e);
  log(`FAILED in "${currentStep}": ${e && e.message ? e.message : e}`);
  if (page) {
    try { await page.screenshot({ path: join(opt.shots, 'status_page-failure.png'), fullPage: true }); } catch { /* closed */ }
  }
  save();
  process.exitCode = 1;
} finally {
  await browser.close();
}
