// The coldstart page: upload a recording -> similar songs; a user id -> recommendations.
// Plain browser JavaScript, no build step; every request goes to this service's /v1 API.
"use strict";

const $ = (id) => document.getElementById(id);

function headers() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function call(url, options = {}) {
  const response = await fetch(url, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = body && body.error ? body.error : { code: String(response.status), message: response.statusText };
    throw new Error(`${error.message} (${error.code})`);
  }
  return body;
}

function showStatus(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

function fillTable(table, results) {
  const body = table.querySelector("tbody");
  body.replaceChildren();
  results.forEach((song, position) => {
    const row = document.createElement("tr");
    row.className = "result";
    row.dataset.songId = song.id;
    const cells = [String(position + 1), song.title || song.id, song.artist, song.score.toFixed(4)];
    cells.forEach((text, column) => {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (column === 1 && song.new) {
        const badge = document.createElement("span");
        badge.className = "new";
        badge.textContent = "new";
        cell.append(badge);
      }
      if (column === 3) cell.className = "score";
      row.append(cell);
    });
    const listen = document.createElement("td");
    if (song.has_audio) {
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "none";
      audio.src = `/v1/tracks/${encodeURIComponent(song.id)}/audio`;
      listen.append(audio);
    }
    row.append(listen);
    body.append(row);
  });
  table.hidden = results.length === 0;
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
  } catch (error) {
    showStatus(status, error.message, true);
    $("similar-results").hidden = true;
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

call("/v1/model").then(
  (model) => { $("model").textContent = `model ${model.version}, published ${model.created_at}`; },
  (error) => { showStatus($("model"), `no model: ${error.message}`, true); },
);
