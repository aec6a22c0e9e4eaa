// Swagger UI's "Try it out" in a real headless Chromium, as a person would use it.
//
//   node tests/e2e/browser/swagger_try_it_out.mjs BASE_URL [HOST_RULES]
//
// Opens BASE_URL/docs (with a ?url= and ?configUrl= it must ignore), expands POST /prediction,
// clicks "Try it out", fills the body, clicks Execute, and checks that the answer is a 200 from
// BASE_URL/prediction whose label is one of GET /model's labels. Every request the page makes
// must go to BASE_URL's origin (no validator badge, no CDN), no validator badge may be drawn, and
// the page may break no Content-Security-Policy rule nor throw. HOST_RULES goes to Chromium's
// --host-resolver-rules (e.g. "MAP classifier.internal 127.0.0.1"); certificate errors are
// ignored (the HTTPS test's certificate is self-signed). Prints a JSON report; exits 1 on failure.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TEXT = "the shuttle launch was delayed by the weather";
const TIMEOUT_MS = 30_000;
const FOREIGN = "https://foreign.invalid";
const BLOCKED = /Content.Security.Policy|Mixed Content/i;

const [baseUrl, hostRules] = process.argv.slice(2);
if (!baseUrl) {
  console.error("usage: swagger_try_it_out.mjs BASE_URL [HOST_RULES]");
  process.exit(2);
}
const origin = new URL(baseUrl).origin;
const report = { base: baseUrl, requests: [], foreign: [], problems: [], console: [] };

function check(ok, problem) {
  if (!ok) report.problems.push(problem);
  return ok;
}

// Requests that leave nothing: data: and blob: URLs are not network requests.
function isNetwork(url) {
  return !/^(data|blob|about):/.test(url);
}

const profile = mkdtempSync(join(tmpdir(), "swagger-ui-chromium-"));
const args = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
if (hostRules) args.push(`--host-resolver-rules=${hostRules}`);

let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args,
    ignoreHTTPSErrors: true,
    timeout: TIMEOUT_MS,
  });
  context.setDefaultTimeout(TIMEOUT_MS);
  context.on("request", (request) => {
    const url = request.url();
    if (!isNetwork(url)) return;
    report.requests.push(`${request.method()} ${url}`);
    if (new URL(url).origin !== origin) report.foreign.push(url);
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") report.console.push(message.text());
  });
  page.on("pageerror", (error) => report.problems.push(`the page threw: ${error.message}`));

  // The query asks for another document and another configuration: both must be ignored.
  const spoof = `?url=${encodeURIComponent(FOREIGN + "/openapi.json")}&configUrl=${encodeURIComponent(FOREIGN + "/config.json")}`;
  const docs = await page.goto(`${baseUrl}/docs${spoof}`, { waitUntil: "load" });
  check(docs.status() === 200, `GET /docs answered ${docs.status()}`);
  report.csp = docs.headers()["content-security-policy"] ?? null;

  const operation = page.locator(".opblock.opblock-post").filter({
    has: page.locator('.opblock-summary-path[data-path="/prediction"]'),
  });
  await operation.locator(".opblock-summary-control").click();
  await operation.locator("button.try-out__btn").click();
  await operation.locator("textarea.body-param__text").fill(JSON.stringify({ text: TEXT }));

  // An answer, or the browser's refusal to send the request (then there is no answer to wait for).
  const answered = Promise.race([
    page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname.endsWith("/prediction")),
    page.waitForEvent("console", (m) => BLOCKED.test(m.text())).then(() => null),
  ]).catch(() => null);
  await operation.locator("button.execute").click();
  const response = await answered;
  report.requestUrl = (await operation.locator(".request-url pre").textContent().catch(() => null))?.trim() ?? null;
  if (check(response !== null, `no answer to Try it out's POST (Swagger UI called ${report.requestUrl})`)) {
    report.prediction = { url: response.url(), status: response.status() };
    check(response.url() === `${origin}/prediction`, `Try it out called ${response.url()}, not ${origin}/prediction`);
    check(response.status() === 200, `Try it out's POST answered ${response.status()}`);

    const live = operation.locator(".live-responses-table");
    report.shownStatus = (await live.locator("tbody tr.response .response-col_status").first().textContent()).trim();
    check(report.shownStatus === "200", `the response section shows status ${report.shownStatus}`);
    const shownBody = await live.locator("tbody .response-col_description .highlight-code pre").first().textContent();
    report.shownLabel = JSON.parse(shownBody).label;
    const model = await page.evaluate(async () => (await fetch("./model")).json());
    report.labels = model.labels;
    check(model.labels.includes(report.shownLabel), `the label shown, ${report.shownLabel}, is not one of ${model.labels}`);
  }

  report.validatorBadges = await page.locator('img[alt="Online validator badge"]').count();
  check(report.validatorBadges === 0, "a validator badge is drawn");
  report.loadErrors = await page.locator(".errors-wrapper").count();
  check(report.loadErrors === 0, "Swagger UI shows errors");
} catch (error) {
  report.problems.push(`${error.name}: ${error.message.split("\n")[0]}`);
} finally {
  // Checked whatever happened above: a stray request is often why a step failed.
  check(report.foreign.length === 0, `requests to other hosts: ${report.foreign.join(", ")}`);
  const blocked = report.console.filter((line) => BLOCKED.test(line));
  check(blocked.length === 0, `blocked by the browser: ${blocked.join(" | ")}`);
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

console.log(JSON.stringify(report, null, 2));
process.exit(report.problems.length === 0 ? 0 : 1);
