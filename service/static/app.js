// The coldstart page: upload a recording -> where it lands on the catalogue's map, its
// nearest songs to hear (and its tags, when the answer has them); the served model's card;
// the nightly runs; a user's recommendations. Plain browser JavaScript modules, no build
// step; every request goes to this service's /v1 API.
"use strict";

import { $, ApiError, call, element, formatDate, showStatus } from "./api.js";
import { fillCard } from "./card.js";
import { drawMap, linkRowsToMap, loadMap } from "./map.js";
import { loadRuns } from "./runs.js";

let servedVersion = null;

function fillTable(table, results) {
  const body = table.querySelector("tbody");
  body.replaceChildren();
  results.forEach((song, position) => {
    const row = element("tr", { className: "result", parent: body });
    row.dataset.songId = song.id;
    element("td", { className: "rank", text: String(position + 1), parent: row });
    const title = element("td", { text: song.title || song.id, parent: row });
    if (song.new) element("span", { className: "new", text: "new", parent: title });
    element("td", { text: song.artist, parent: row });
    element("td", { className: "score", text: song.score.toFixed(4), parent: row });
    const listen = element("td", { parent: row });
    if (song.has_audio) {
      const audio = element("audio", { parent: listen });
      audio.controls = true;
      audio.preload = "none";
      audio.src = `/v1/tracks/${encodeURIComponent(song.id)}/audio`;
    }
  });
  table.hidden = results.length === 0;
}

/** The answer's `tags` ([{tag, probability}], most probable first; null from a model without a tag head). */
function fillTags(container, tags) {
  container.replaceChildren();
  for (const { tag, probability } of tags ?? []) {
    const chip = element("span", { className: "tag", text: tag, parent: container });
    element("small", { text: probability.toFixed(2), parent: chip });
  }
  if (tags?.length) container.prepend(element("span", { className: "muted", text: "tags" }));
  container.hidden = !tags?.length;
}

let mapRequests = 0; // only the latest request draws: an older one may answer later

async function showMap(space, answer = null) {
  const caption = $("map-caption");
  const request = ++mapRequests;
  if (!servedVersion) return;
  try {
    const map = await loadMap(answer ? answer.model_version : servedVersion, space);
    if (request !== mapRequests) return;
    drawMap($("map"), caption, map, answer ? answer.on_map : null, answer ? answer.results : []);
  } catch (error) {
    if (request !== mapRequests) return;
    $("map").replaceChildren();
    const missing = error instanceof ApiError && error.code === "map_not_available";
    showStatus(caption, missing ? `No map: ${error.message}` : `The map could not be read: ${error.message}`, !missing);
  }
}

let chosenFile = null;

function choose(file) {
  chosenFile = file;
  $("drop-text").textContent = file ? `${file.name} (${(file.size / 1e6).toFixed(2)} MB)` : "Drop an audio file here, or click to pick one";
  const preview = $("preview");
  if (file) {
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  }
}

$("file").addEventListener("change", (event) => choose(event.target.files[0] || null));

const drop = $("drop");
["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
  event.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((type) => drop.addEventListener(type, (event) => {
  event.preventDefault();
  drop.classList.remove("over");
}));
drop.addEventListener("drop", (event) => {
  const file = event.dataTransfer.files[0];
  if (file) choose(file);
});

$("space").addEventListener("change", () => showMap($("space").value));
linkRowsToMap($("map"), $("similar-results"));

$("similar-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = $("similar-status");
  if (!chosenFile) {
    showStatus(status, "Pick or drop an audio file first.", true);
    return;
  }
  const form = new FormData();
  form.append("file", chosenFile, chosenFile.name);
  if ($("artist").value.trim()) form.append("artist", $("artist").value);
  const query = new URLSearchParams({ k: $("k").value, space: $("space").value });
  showStatus(status, "Listening…");
  $("similar-button").disabled = true;
  try {
    const result = await call(`/v1/similar?${query}`, { method: "POST", body: form });
    const t = result.timings;
    const placed = result.placement === "hybrid" ? "placed by audio and artist" : "placed by audio";
    showStatus(status, `${result.results.length} songs by cosine in the ${result.space} space,` +
      ` ${placed} (model ${result.model_version}; ${result.audio.seconds.toFixed(1)} s heard;` +
      ` decode ${t.decode_ms.toFixed(0)} ms, features ${t.features_ms.toFixed(0)} ms,` +
      ` model ${t.model_ms.toFixed(0)} ms, search ${t.search_ms.toFixed(1)} ms)`);
    fillTable($("similar-results"), result.results);
    fillTags($("tags"), result.tags);
    await showMap(result.space, result);
  } catch (error) {
    showStatus(status, error.message, true);
    $("similar-results").hidden = true;
    $("tags").hidden = true;
  } finally {
    $("similar-button").disabled = false;
  }
});

$("recs-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = $("recs-status");
  const user = $("user").value.trim();
  const query = new URLSearchParams({ k: $("recs-k").value, only_new: $("only-new").checked });
  showStatus(status, "Ranking…");
  try {
    const result = await call(`/v1/users/${encodeURIComponent(user)}/recommendations?${query}`);
    showStatus(status, `${result.results.length} songs by ${result.scoring.replace("_", " ")} of`
      + ` ${result.user_id}'s factors with the cf vectors` + (result.only_new ? " (new tracks only)" : ""));
    fillTable($("recs-results"), result.results);
  } catch (error) {
    showStatus(status, error.message, true);
    $("recs-results").hidden = true;
  }
});

async function loadModel() {
  try {
    const model = await call("/v1/model");
    servedVersion = model.version;
    showStatus($("model"), `model ${model.version}, published ${formatDate(model.created_at)}`);
    fillCard(model);
    await showMap($("space").value);
  } catch (error) {
    showStatus($("model"), `no model: ${error.message}`, true);
    showStatus($("map-caption"), "No map without a model.");
  }
}

$("runs-reload").addEventListener("click", loadRuns);
$("api-key").addEventListener("change", () => {
  if (!servedVersion) loadModel();
  loadRuns();
});
loadModel();
loadRuns();
