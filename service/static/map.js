// The 2-D map of the catalogue (GET /v1/model/map) as SVG: every song drawn as a dot, and
// after an upload (POST /v1/similar's `on_map`) the recording and its nearest songs on top.
// Both axes share one scale, so distances on the map are the projection's distances.
"use strict";

import { call, showStatus } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 440;
const PADDING = 26;
const maps = new Map(); // "version/space" -> the map's JSON, fetched once

function svg(tag, attributes, parent) {
  const made = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, String(value));
  parent.append(made);
  return made;
}

function titled(node, text) {
  svg("title", {}, node).textContent = text;
  return node;
}

/** The map of `space` for `version`, from the service once, then from memory. */
export async function loadMap(version, space) {
  const key = `${version}/${space}`;
  if (!maps.has(key)) maps.set(key, call(`/v1/model/map?space=${encodeURIComponent(space)}`));
  try {
    return await maps.get(key);
  } catch (error) {
    maps.delete(key);
    throw error;
  }
}

/** Screen coordinates for map coordinates: one scale for both axes, y upwards. */
function frame(points) {
  const xs = points.map((point) => point.x);
  const ys = points.map((point) => point.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const scale = Math.min((WIDTH - 2 * PADDING) / (x1 - x0 || 1), (HEIGHT - 2 * PADDING) / (y1 - y0 || 1));
  const cx = WIDTH / 2 - (scale * (x0 + x1)) / 2;
  const cy = HEIGHT / 2 + (scale * (y0 + y1)) / 2;
  return (point) => [(cx + scale * point.x).toFixed(1), (cy - scale * point.y).toFixed(1)];
}

/**
 * Draw `map` into `canvas` (an <svg>); with `upload` (an answer's `on_map`), the recording
 * and its neighbours, numbered as in `hits` (the answer's results, best first).
 */
export function drawMap(canvas, caption, map, upload = null, hits = []) {
  canvas.replaceChildren();
  canvas.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  canvas.dataset.space = map.space;
  const neighbours = upload ? upload.neighbours : [];
  const place = frame([...map.points, ...(upload ? [upload, ...neighbours] : [])]);
  svg("rect", { class: "frame", x: 0.5, y: 0.5, width: WIDTH - 1, height: HEIGHT - 1, rx: 8 }, canvas);

  const songs = svg("g", { class: "songs" }, canvas);
  for (const point of map.points) {
    const [x, y] = place(point);
    const dot = titled(svg("circle", { class: "song", cx: x, cy: y, r: 2.6 }, songs), `${point.title} — ${point.artist}`);
    dot.dataset.songId = point.id;
  }

  if (upload) {
    const [ux, uy] = place(upload);
    const links = svg("g", { class: "links" }, canvas);
    const marks = svg("g", { class: "neighbours" }, canvas);
    const byId = new Map(hits.map((hit, position) => [hit.id, { hit, rank: position + 1 }]));
    // Farthest first, so the nearest neighbours' marks lie on top.
    for (const point of [...neighbours].reverse()) {
      const found = byId.get(point.id);
      if (!found) continue; // gone from the catalogue since the search
      const [x, y] = place(point);
      svg("line", { class: "link", x1: ux, y1: uy, x2: x, y2: y }, links);
      const mark = svg("g", { class: "neighbour", transform: `translate(${x} ${y})` }, marks);
      mark.dataset.songId = point.id;
      titled(svg("circle", { r: 7.5 }, mark), `#${found.rank} ${found.hit.title} — ${found.hit.artist} (cosine ${found.hit.score.toFixed(3)})`);
      svg("text", { "text-anchor": "middle", dy: "0.35em" }, mark).textContent = String(found.rank);
    }
    const you = svg("g", { class: "upload", transform: `translate(${ux} ${uy})` }, canvas);
    titled(svg("path", { d: "M0,-11 L3.2,-3.6 L11,-3.4 L4.8,1.6 L6.8,9.4 L0,5 L-6.8,9.4 L-4.8,1.6 L-11,-3.4 L-3.2,-3.6 Z" }, you), "your recording");
  }

  const [first, second] = map.explained_variance.map((share) => `${(100 * share).toFixed(0)}%`);
  const drawn = map.points.length < map.n_songs ? `${map.points.length.toLocaleString()} of its ${map.n_songs.toLocaleString()} songs (a fixed sample)` : `all ${map.points.length.toLocaleString()} songs`;
  const where = upload ? "; your recording went through the same projection as every song" : "";
  showStatus(caption, `The ${map.space} space, ${drawn}, on its two principal axes (${first} and ${second} of the variance),`
    + ` fitted when model ${map.model_version} was published${where}.`);
}

/** Light up a neighbour on the map while its row is pointed at, and the reverse. */
export function linkRowsToMap(canvas, table) {
  const toggle = (songId, on) => {
    for (const node of canvas.querySelectorAll("g.neighbour")) {
      if (node.dataset.songId === songId) node.classList.toggle("active", on);
    }
    for (const row of table.querySelectorAll("tr.result")) {
      if (row.dataset.songId === songId) row.classList.toggle("active", on);
    }
  };
  for (const [container, selector] of [[table, "tr.result"], [canvas, "g.neighbour"]]) {
    container.addEventListener("mouseover", (event) => {
      const target = event.target.closest(selector);
      if (target) toggle(target.dataset.songId, true);
    });
    container.addEventListener("mouseout", (event) => {
      const target = event.target.closest(selector);
      if (target) toggle(target.dataset.songId, false);
    });
  }
}
