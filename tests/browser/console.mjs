// End-to-end test of `aerodbctl console` in Debian's headless chromium, driven by playwright-core.
// Run by tests/console.rs (which starts the cluster and three consoles and checks the kernels'
// ledgers and the audit afterwards). Environment: CHROMIUM, OBSERVER_URL, AUDITOR_URL,
// ACTOR_URL, USER_DATA_DIR, KILL_N3_PID, SCREENSHOT_DIR. Prints `RESULT {json}` last.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const shots = env('SCREENSHOT_DIR');
fs.mkdirSync(shots, { recursive: true });
const TIMEOUT = 30_000;

const context = await chromium.launchPersistentContext(env('USER_DATA_DIR'), {
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--headless'],
  viewport: { width: 1280, height: 800 },
});
context.setDefaultTimeout(TIMEOUT);
// Nothing leaves loopback: any request elsewhere fails the test.
const offsite = [];
context.on('request', (r) => { if (!/^http:\/\/(127\.0\.0\.1|localhost):\d+\//.test(r.url()) && !r.url().startsWith('about:')) offsite.push(r.url()); });
const step = (s) => console.log('step: ' + s);
const shot = async (page, name) => page.screenshot({ path: path.join(shots, name + '.png') });

async function open(url) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // A refused request (403, 409) is logged by chromium as a failed resource load: expected here.
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text()); });
  await page.goto(url);
  // The secret leaves the address bar: the console redirected to /.
  assert.equal(new URL(page.url()).search, '', 'secret dropped from the URL');
  await page.waitForSelector('#overview-table');
  page.errors = errors;
  return page;
}

async function role(page, node) {
  return page.locator(`tr[data-node="${node}"]`).getAttribute('data-role');
}

async function refreshOverview(page) {
  await page.click('nav button[data-view="overview"]');
  await page.waitForSelector('#overview-table');
}

const result = {};

// ---------------------------------------------------------------- read-only observer console
step('observer: overview');
const obs = await open(env('OBSERVER_URL'));
assert.deepEqual(await obs.locator('#overview-table tbody tr th').allTextContents(), ['n1', 'n2', 'n3']);
assert.equal(await role(obs, 'n1'), 'primary');
assert.equal(await role(obs, 'n2'), 'replica');
assert.equal(await role(obs, 'n3'), 'replica');
// Colour is never the only signal: the role is written in the cell.
assert.equal((await obs.locator('tr[data-node="n1"] .tag').textContent()).trim(), 'primary');
assert.match(await obs.locator('p.stamp').first().textContent(), /Observed \d{4}-\d\d-\d\d .*Observation points: n1 at control_seq/);
await shot(obs, 'overview');
step('observer: facts only (P7-A3)');
const WORDS = /recommend|suggest|healthy|best|rank|candidate|should/i;
assert.doesNotMatch(await obs.locator('body').innerText(), WORDS);
await obs.click('nav button[data-view="promotion"]');
await obs.waitForSelector('tr[data-node="n3"]');
assert.doesNotMatch(await obs.locator('body').innerText(), WORDS);
assert.deepEqual(await obs.locator('tbody tr th').allTextContents(), ['n1', 'n2', 'n3'], 'configuration order');
await obs.click('nav button[data-view="overview"]');
await obs.waitForSelector('#overview-table');
step('observer: no mutation control at all');
assert.equal(await obs.locator('nav button[data-view="actions"]').count(), 0);
assert.equal(await obs.locator('#start-action, form#action-request, form#action-confirm').count(), 0);
assert.equal(await obs.locator('nav button[data-view="audit"]').count(), 0, 'audit only with an auditor profile');
const forged = await obs.evaluate(async () => {
  const r = await fetch('/api/actions/request', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: 'x', command: 'demote', target: 'n1' }) });
  return r.status;
});
assert.equal(forged, 403, 'a forged POST from the page is refused');
step('observer: keyboard navigation to node detail');
await obs.focus('nav button[data-view="node"]');
await obs.keyboard.press('Enter');
await obs.waitForSelector('button[data-node-button="n1"]');
await obs.focus('button[data-node-button="n1"]');
await obs.keyboard.press('Enter');
await obs.waitForSelector('text=Node n1 at');
assert.equal(await obs.evaluate(() => document.activeElement.tagName), 'H2', 'focus moves to the view heading');
await shot(obs, 'node');
step('observer: narrow window');
await obs.setViewportSize({ width: 420, height: 800 });
await refreshOverview(obs);
const overflow = await obs.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
assert.ok(overflow <= 0, `the page itself does not scroll sideways at 420 px (tables scroll in their box): ${overflow}`);
await shot(obs, 'overview-narrow');
await obs.setViewportSize({ width: 1280, height: 800 });

// ---------------------------------------------------------------- actions
const act = await open(env('ACTOR_URL'));
async function startAction(command, target) {
  await act.click('nav button[data-view="actions"]');
  if (await act.locator('#new-action').count()) await act.click('#new-action');
  await act.click('#start-action');
  // The idempotency key is on the page before anything is requested.
  await act.waitForSelector('#idempotency-key');
  const key = await act.locator('#idempotency-key').getAttribute('data-key');
  assert.match(key, /^web-[0-9a-f]{16}$/);
  assert.equal(await act.locator('#explanation').count(), 0);
  await act.selectOption('#action-command', command);
  await act.fill('#action-target', target);
  await act.click('form#action-request button[type="submit"]');
  await act.waitForSelector('#explanation');
  // The key stays above the explanation.
  const before = await act.evaluate(() => Boolean(document.getElementById('idempotency-key').compareDocumentPosition(document.getElementById('explanation')) & Node.DOCUMENT_POSITION_FOLLOWING));
  assert.ok(before, 'key printed before the explanation');
  return key;
}
async function typeAndConfirm(typed) {
  await act.fill('#typed-target', typed);
  await act.click('#confirm-button');
  await act.waitForSelector('#action-result, .error');
}

step('actor: a mistyped target executes nothing');
result.mistyped_key = await startAction('demote', 'n1');
for (const heading of ['What cannot be undone', 'Invariants', 'Kernel checks, in the order the kernel performs them', 'Facts the explanation relies on']) {
  assert.equal(await act.locator('#explanation h3', { hasText: heading }).count(), 1, heading);
}
assert.match(await act.locator('#explanation').textContent(), /plan epoch\d+/);
await shot(act, 'action-explanation');
await typeAndConfirm('n2');
assert.equal(await act.locator('#action-result').count(), 0);
assert.match(await act.locator('.error').textContent(), /NOT_EXECUTED \(nothing was executed\)/);
await refreshOverview(act);
assert.equal(await role(act, 'n1'), 'primary', 'n1 is still primary after the mistype');

step('actor: demote n1 typed');
result.demote_key = await startAction('demote', 'n1');
await typeAndConfirm('n1');
assert.equal(await act.locator('#action-result').getAttribute('data-result'), 'executed');
await shot(act, 'action-executed');
step('actor: wait until n2 holds n1\'s Fence, as an operator reads it off the view');
for (let i = 0; ; i++) {
  const fenced = await act.evaluate(async () => {
    const j = await (await fetch('/api/cluster')).json();
    const last = (id) => Number(j.data.nodes.find((n) => n.node_id === id)?.snapshot?.replication?.last_index ?? 0);
    return last('n1') > 0 && last('n2') >= last('n1');
  });
  if (fenced) break;
  if (i >= 500) throw new Error('n2 never held n1\'s Fence');
  await new Promise((r) => setTimeout(r, 20));
}
step('actor: promote n2 typed');
result.promote_key = await startAction('promote', 'n2');
await typeAndConfirm('n2');
assert.equal(await act.locator('#action-result').getAttribute('data-result'), 'executed');
await refreshOverview(act);
assert.equal(await role(act, 'n1'), 'demoted');
assert.equal(await role(act, 'n2'), 'primary');

step('actor: leaving the page declines the pending action');
result.abandoned_key = await startAction('demote', 'n2');
await act.goto('about:blank');
await act.close();

// ---------------------------------------------------------------- auditor
step('auditor: the timeline shows the actions');
const aud = await open(env('AUDITOR_URL'));
await aud.click('nav button[data-view="audit"]');
await aud.waitForSelector('#audit-table');
await aud.fill('#audit-limit', '1000');
await aud.click('fieldset button[type="submit"]');
await aud.waitForSelector('#audit-table');
assert.equal(await aud.locator('[data-verify="ok"]').count(), 1, 'the trail verifies');
const stagesOf = async (key) => aud.locator(`#audit-table tr[data-key="${key}"]`).evaluateAll((rows) => rows.map((r) => r.dataset.stage));
// The beacon is asynchronous: wait (bounded) for the decline to be on the trail.
const deadline = Date.now() + TIMEOUT;
while (!(await stagesOf(result.abandoned_key)).includes('declined')) {
  assert.ok(Date.now() < deadline, 'leaving the page declined the pending action');
  await aud.click('[data-refresh]');
  await aud.waitForSelector('#audit-table');
}
assert.deepEqual(await stagesOf(result.demote_key), ['requested', 'confirmation_requested', 'confirmed', 'executed']);
assert.deepEqual(await stagesOf(result.promote_key), ['requested', 'confirmation_requested', 'confirmed', 'executed']);
assert.deepEqual(await stagesOf(result.mistyped_key), ['requested', 'confirmation_requested', 'rejected']);
assert.deepEqual(await stagesOf(result.abandoned_key), ['requested', 'confirmation_requested', 'declined']);
step('auditor: filter by stage and reconstruct');
await aud.fill('#audit-stage', 'executed');
await aud.click('fieldset button[type="submit"]');
await aud.waitForSelector('#audit-table');
assert.deepEqual([...new Set(await aud.locator('#audit-table tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.stage)))], ['executed']);
await aud.fill('#audit-stage', '');
await aud.click('fieldset button[type="submit"]');
await aud.waitForSelector('#audit-table');
await aud.locator(`#audit-table tr[data-key="${result.abandoned_key}"][data-stage="declined"] button[data-reconstruct]`).click();
await aud.waitForSelector('#reconstruction');
assert.match(await aud.locator('#reconstruction').textContent(), /declined/);
await aud.locator(`#audit-table tr[data-key="${result.demote_key}"][data-stage="executed"] button[data-reconstruct]`).click();
await aud.waitForSelector('#reconstruction');
assert.match(await aud.locator('#reconstruction').textContent(), /missing stagesnone/);
await aud.evaluate(() => [...document.querySelectorAll('h3')].find((h) => h.textContent === 'Verification').scrollIntoView());
await shot(aud, 'audit');

// ---------------------------------------------------------------- a killed node
step('observer: a killed node is an unreachable row with its error');
process.kill(Number(env('KILL_N3_PID')), 'SIGKILL');
const until = Date.now() + TIMEOUT;
for (;;) {
  await refreshOverview(obs);
  if ((await obs.locator('tr[data-node="n3"]').getAttribute('data-state')) === 'unreachable') break;
  assert.ok(Date.now() < until, 'n3 shown as unreachable');
}
assert.match(await obs.locator('tr[data-node="n3"]').textContent(), /UNREACHABLE.*transport error: .+/);
assert.equal(await role(obs, 'n2'), 'primary');
await shot(obs, 'overview-unreachable');

for (const p of [obs, aud]) assert.deepEqual(p.errors, [], 'no script errors, no CSP violations');
assert.deepEqual(offsite, [], 'no request left loopback');
await context.close();
console.log('RESULT ' + JSON.stringify(result));
