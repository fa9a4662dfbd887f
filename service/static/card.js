// The served model's card (GET /v1/model): its version and counts, the report's model table
// per kind of cold test song, and the evaluation's figures. The tables are built from the
// report's JSON as it comes: a metric or a kind the report gains shows up by itself.
"use strict";

import { $, callBlob, element, formatDate } from "./api.js";

const KIND_TITLES = { all: "All test songs", cold_track: "Cold tracks", cold_artist: "Cold artists" };
const KIND_NOTES = {
  all: "Every held-out song",
  cold_track: "New songs by artists with training songs",
  cold_artist: "Songs by artists without a training song",
};
const KIND_ORDER = ["all", "cold_track", "cold_artist"];
const REFERENCE_ROWS = { upper_bound: "upper bound (WMF, listens seen)", random: "random" };
const FACTS = [
  ["catalogue_songs", "catalogue songs"],
  ["content_songs", "with audio"],
  ["cf_songs_predicted", "placed by audio in the cf space"],
  ["users", "listeners"],
];

/** `{column: value}` of one model's metrics, nested objects flattened (`recall` {50: x} -> `recall@50`). */
function flatten(metrics, prefix = "") {
  const columns = {};
  for (const [name, value] of Object.entries(metrics)) {
    const column = prefix ? `${prefix}@${name}` : name;
    if (value !== null && typeof value === "object") Object.assign(columns, flatten(value, column));
    else columns[column] = value;
  }
  return columns;
}

function heading(column, k) {
  if (column === "map") return `mAP@${k}`;
  if (column === "auc") return "AUC";
  return column.replace(/^ndcg/, "NDCG");
}

function formatValue(value) {
  if (typeof value !== "number") return value === null || value === undefined ? "" : String(value);
  return Number.isInteger(value) ? value.toLocaleString() : value.toFixed(4);
}

/** One model table: a row per model (best mAP first), reference rows apart, a column per metric. */
function modelTable(table, k) {
  const rows = Object.entries(table.models).map(([name, metrics]) => [name, flatten(metrics)]);
  rows.sort(([a, x], [b, y]) => (y.map ?? 0) - (x.map ?? 0) || a.localeCompare(b));
  const random = flatten(table.expected_random || {});
  const columns = [];
  for (const [, metrics] of rows) for (const column of Object.keys(metrics)) if (!columns.includes(column)) columns.push(column);
  // mAP and AUC lead; the rest keep the report's order.
  const ordered = [...columns.filter((c) => c === "map"), ...columns.filter((c) => c === "auc"), ...columns.filter((c) => c !== "map" && c !== "auc")];

  const node = element("table", { className: "model-table" });
  const headRow = element("tr", { parent: element("thead", { parent: node }) });
  element("th", { text: "model", parent: headRow });
  for (const column of ordered) element("th", { className: "number", text: heading(column, k), parent: headRow });
  const body = element("tbody", { parent: node });
  const gaps = table.gap_closed || {};
  for (const [name, metrics] of rows) {
    const row = element("tr", { className: name in REFERENCE_ROWS ? "reference" : "model", parent: body });
    row.dataset.model = name;
    element("td", { text: REFERENCE_ROWS[name] || name, parent: row });
    for (const column of ordered) {
      const cell = element("td", { className: "number", text: formatValue(metrics[column]), parent: row });
      const gap = (gaps[name] || {})[column];
      const closed = typeof gap === "number" && !(name in REFERENCE_ROWS);
      // Every cell keeps the share's room, so the values line up in their column.
      const share = element("span", { className: "gap", text: closed ? `${(100 * gap).toFixed(0)}%` : "", parent: cell });
      if (closed) share.title = "share of the gap from random to the upper bound that this model closes";
    }
  }
  const expected = element("tr", { className: "reference expected", parent: body });
  element("td", { text: "random, expected", parent: expected });
  for (const column of ordered) {
    const cell = element("td", { className: "number", text: formatValue(random[column]), parent: expected });
    element("span", { className: "gap", parent: cell });
  }
  return node;
}

function showKind(kind) {
  for (const tab of $("card-kinds").children) tab.setAttribute("aria-selected", String(tab.dataset.kind === kind));
  for (const panel of $("card-tables").children) panel.hidden = panel.dataset.kind !== kind;
}

/** Fill the card from GET /v1/model's answer. */
export function fillCard(model) {
  const evaluation = model.evaluation;
  const facts = $("card-facts");
  facts.replaceChildren();
  const fact = (term, value) => {
    const item = element("div", { parent: facts });
    element("dt", { text: term, parent: item });
    element("dd", { text: value, parent: item });
  };
  fact("version", model.version);
  fact("published", formatDate(model.created_at));
  for (const [name, label] of FACTS) if (name in model.counts) fact(label, model.counts[name].toLocaleString());
  fact("factors", String(model.n_factors));

  const tabs = $("card-kinds");
  const panels = $("card-tables");
  tabs.replaceChildren();
  panels.replaceChildren();
  const rank = (kind) => (KIND_ORDER.includes(kind) ? KIND_ORDER.indexOf(kind) : KIND_ORDER.length);
  const kinds = [["all", evaluation], ...Object.entries(evaluation.kinds || {})];
  kinds.sort(([a], [b]) => rank(a) - rank(b));
  for (const [kind, table] of kinds) {
    const tab = element("button", { text: KIND_TITLES[kind] || kind, parent: tabs });
    tab.type = "button";
    tab.setAttribute("role", "tab");
    tab.dataset.kind = kind;
    tab.addEventListener("click", () => showKind(kind));
    const panel = element("div", { className: "kind", parent: panels });
    panel.dataset.kind = kind;
    panel.setAttribute("role", "tabpanel");
    const counts = `${table.n_test_songs.toLocaleString()} cold test songs, ranked by ${table.n_users.toLocaleString()} listeners.`;
    element("p", { className: "muted", text: KIND_NOTES[kind] ? `${KIND_NOTES[kind]}: ${counts}` : counts, parent: panel });
    panel.append(modelTable(table, evaluation.k));
  }
  showKind("all");
  $("card-note").textContent = `Each listener ranks the test songs WMF never saw; a song is relevant to a listener who played it.`
    + ` Percentages: the share of the gap from random to the upper bound a model closes.`;

  const plots = $("card-plots");
  plots.replaceChildren();
  for (const name of model.plots || []) {
    const figure = element("figure", { className: "plot", parent: plots });
    const image = element("img", { parent: figure });
    image.alt = `the evaluation's ${name}`;
    element("figcaption", { className: "muted", text: name, parent: figure });
    callBlob(`/v1/model/plots/${encodeURIComponent(name)}`).then(
      (url) => { image.src = url; },
      (error) => { figure.replaceChildren(element("p", { className: "error", text: `${name}: ${error.message}` })); },
    );
  }
}
