// Drive a running JupyterLab in headless Chromium: open a notebook, run all cells, move the first
// slider of the last widget that has a slider and a figure, and check that the figure changed.
//
// Run by tests/test_browser.py; all inputs come from the environment:
//   LAB_URL          the notebook's URL, token included (http://127.0.0.1:PORT/lab/tree/NB?token=...)
//   CHROMIUM         the browser executable (default /usr/bin/chromium)
//   USER_DATA_DIR    a fresh, empty profile folder
//   SHOT_BEFORE      screenshot path before the slider moves
//   SHOT_AFTER       screenshot path after the figure was redrawn
//   SHOT_FAILURE     screenshot path written when something goes wrong
//   WIDGET_TIMEOUT_MS  how long to wait for the widget after "Run All Cells" (default 60000)
//   REDRAW_TIMEOUT_MS  how long to wait for the redrawn figure (default 30000)
// Prints one JSON object on stdout (the last line); exit status 0 when the run got that far,
// 1 on an error (the JSON then has "error"). The assertions themselves live in the pytest test.
import { createHash } from 'node:crypto';
import { chromium } from 'playwright-core';

const env = process.env;
const url = env.LAB_URL;
const widgetTimeout = Number(env.WIDGET_TIMEOUT_MS || 60000);
const redrawTimeout = Number(env.REDRAW_TIMEOUT_MS || 30000);
const t0 = Date.now();
const result = { steps: [] };
const step = (name) => {
  result.steps.push([name, (Date.now() - t0) / 1000]);
  console.error(`[lab_slider ${((Date.now() - t0) / 1000).toFixed(1)}s] ${name}`);
};
// Scroll the code cell holding `el` to the top of the notebook, so a screenshot shows the code too.
const showCell = async (el) => {
  await el.evaluate((e) => (e.closest('.jp-Cell') || e).scrollIntoView({ block: 'start' }));
  await el.page().waitForTimeout(300); // let the scroll settle before the picture
};
const digest = (s) => (s ? createHash('sha256').update(s).digest('hex').slice(0, 16) : null);

if (!url || !env.USER_DATA_DIR || !env.SHOT_BEFORE || !env.SHOT_AFTER) {
  console.log(JSON.stringify({ error: 'LAB_URL, USER_DATA_DIR, SHOT_BEFORE and SHOT_AFTER must be set' }));
  process.exit(2);
}

const context = await chromium.launchPersistentContext(env.USER_DATA_DIR, {
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Without the background-networking flags Chromium keeps calling home, which on a closed
  // network only produces refused connections and noise.
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 1100 },
  timeout: 30000,
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(20000);
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text().slice(0, 300)); });
page.on('pageerror', (e) => consoleErrors.push(String(e).slice(0, 300)));

try {
  step('open notebook');
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 30000 });
  await page.locator('.jp-NotebookPanel .jp-Cell').first().waitFor({ timeout: 45000 });
  // A "Select Kernel" dialog would block "Run All Cells" (the test's Lab settings should prevent
  // it; accept the preselected kernel if it shows up anyway), and the kernel should be idle first.
  const dialog = page.locator('.jp-Dialog');
  await page.addLocatorHandler(dialog, async () => {
    step('accept a dialog');
    await dialog.locator('.jp-mod-accept').click();
  });
  step('wait for an idle kernel');
  await page.locator('.jp-StatusBar-TextItem', { hasText: /\| Idle$/ }).first().waitFor({ timeout: 30000 });

  step('Run > Run All Cells');
  await page.locator('.lm-MenuBar-item', { hasText: /^Run$/ }).click();
  await page.locator('.lm-Menu-item:not(.lm-mod-disabled)', { hasText: /^Run All Cells/ }).click();
  // Fail early (and clearly) when nothing was executed.
  await page.locator('.jp-CodeCell .jp-InputPrompt', { hasText: /\[(\*|\d+)\]/ }).first()
    .waitFor({ timeout: 15000 });

  // The explorer: a widget box holding a slider and an Output area with the figure.
  step('wait for the widget');
  const explorer = page.locator('.jp-OutputArea-output .widget-vbox')
    .filter({ has: page.locator('.widget-slider') })
    .filter({ has: page.locator('.widget-output img') })
    .last();
  await explorer.waitFor({ state: 'visible', timeout: widgetTimeout });
  const slider = explorer.locator('.widget-slider').first();
  const readout = slider.locator('.widget-readout');
  const image = explorer.locator('.widget-output img').last();
  const label = await slider.locator('.widget-label').first().textContent().catch(() => null);

  await image.evaluate((img) => (img.complete && img.naturalWidth > 0) || new Promise((r) => { img.onload = r; }));
  await showCell(explorer);
  result.slider = label && label.trim();
  result.readout_before = (await readout.textContent()).trim();
  const srcBefore = await image.getAttribute('src');
  result.image_before = digest(srcBefore);
  await page.screenshot({ path: env.SHOT_BEFORE });
  step(`before: ${result.slider} = ${result.readout_before}`);

  // continuous_update=False: the value reaches the kernel on "change", which noUiSlider fires
  // for a key press on the handle (and on the release of a drag).
  const handle = slider.locator('.noUi-handle').first();
  await handle.focus();
  await page.keyboard.press('ArrowRight');

  step('wait for the redrawn figure');
  await page.waitForFunction(
    ([before]) => {
      const boxes = [...document.querySelectorAll('.jp-OutputArea-output .widget-vbox')]
        .filter((b) => b.querySelector('.widget-slider') && b.querySelector('.widget-output img'));
      const box = boxes[boxes.length - 1];
      if (!box) return false;
      const imgs = box.querySelectorAll('.widget-output img');
      const img = imgs[imgs.length - 1];
      return img && img.complete && img.naturalWidth > 0 && img.getAttribute('src') !== before;
    },
    [srcBefore],
    { timeout: redrawTimeout, polling: 200 },
  );
  result.readout_after = (await readout.textContent()).trim();
  result.image_after = digest(await image.getAttribute('src'));
  await showCell(explorer);
  await page.screenshot({ path: env.SHOT_AFTER });
  step(`after: ${result.slider} = ${result.readout_after}`);
} catch (err) {
  result.error = String(err && err.stack ? err.stack : err).slice(0, 2000);
  if (env.SHOT_FAILURE) await page.screenshot({ path: env.SHOT_FAILURE }).catch(() => {});
} finally {
  result.console_errors = consoleErrors.slice(0, 20);
  result.seconds = (Date.now() - t0) / 1000;
  await context.close().catch(() => {});
}
console.log(JSON.stringify(result));
process.exit(result.error ? 1 : 0);
