// The nightly runs and the quality gate's decisions (GET /v1/admin/runs, and each run's
// summary from GET /v1/admin/runs/{id}). Those routes need the service's write key: without
// one the section says so rather than showing an empty history.
"use strict";

import { $, ApiError, call, element, formatDate, formatSeconds, showStatus } from "./api.js";

const RUNS_SHOWN = 10;

function gateCell(cell, run) {
  const gate = run.summary && run.summary.gate;
  if (!gate) {
    cell.textContent = run.status === "queued" || run.status === "running" ? "not yet" : "—";
    cell.className = "muted";
    return;
  }
  const verdict = gate.passed ? "passed" : "refused";
  const details = element("details", { className: `gate ${verdict}`, parent: cell });
  const summary = element("summary", { parent: details });
  element("span", { className: `badge ${verdict}`, text: verdict, parent: summary });
  if (gate.decided_by) summary.append(` against the ${gate.decided_by}`);
  element("p", { text: gate.reason || "", parent: details });
}

function runRow(body, run) {
  const row = element("tr", { className: "run", parent: body });
  row.dataset.runId = run.id;
  row.dataset.status = run.status;
  element("td", { className: "when", text: formatDate(run.requested_at), parent: row });
  element("td", { text: run.trigger, parent: row });
  const status = element("td", { parent: row });
  element("span", { className: `badge ${run.status}`, text: run.status, parent: status });
  if (run.message && run.status !== "published") {
    element("div", { className: "muted small", text: run.message, parent: status });
  }
  gateCell(element("td", { parent: row }), run);
  element("td", { className: "version", text: run.version_id || "", parent: row });
  const took = run.started_at && run.finished_at ? (new Date(run.finished_at) - new Date(run.started_at)) / 1000 : null;
  element("td", { className: "number", text: took === null ? "" : formatSeconds(took), parent: row });
}

/** Fill the runs table with the newest runs the key lets this page read. */
export async function loadRuns() {
  const status = $("runs-status");
  const table = $("runs-table");
  showStatus(status, "Loading the run history…");
  status.classList.remove("notice");
  try {
    const listed = await call(`/v1/admin/runs?limit=${RUNS_SHOWN}`);
    const runs = await Promise.all(listed.runs.map((run) => call(`/v1/admin/runs/${encodeURIComponent(run.id)}`).catch(() => run)));
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const run of runs) runRow(body, run);
    table.hidden = runs.length === 0;
    showStatus(status, runs.length ? `The ${runs.length} newest runs, newest first.` : "No run yet: the scheduler records each nightly run here.");
  } catch (error) {
    table.hidden = true;
    if (error instanceof ApiError && error.status === 401) {
      const what = $("api-key").value.trim() ? "The key entered is not accepted" : "The run history needs one of the service's API keys";
      showStatus(status, `${what} (the service says: “${error.message}”). Enter a key under “API key” at the top, then Reload.`);
      status.classList.add("notice");
    } else {
      showStatus(status, `The run history could not be read: ${error.message}`, true);
    }
  }
}
