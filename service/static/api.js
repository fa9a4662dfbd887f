// What every part of the page shares: element lookup, calls to this service's /v1 API (with
// the API key when one is entered), and small DOM builders that only ever set text.
"use strict";

export const $ = (id) => document.getElementById(id);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${message} (${code})`);
    this.status = status;
    this.code = code;
  }
}

function headers() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function request(url, options) {
  const response = await fetch(url, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    const error = body && body.error ? body.error : { code: String(response.status), message: response.statusText };
    throw new ApiError(response.status, error.code, error.message);
  }
  return response;
}

/** The JSON answer of `url`; an `ApiError` with the service's code for anything but 2xx. */
export async function call(url, options = {}) {
  return (await request(url, options)).json();
}

/** An object URL for a binary answer (a figure): fetched with the key, unlike a bare <img>. */
export async function callBlob(url) {
  return URL.createObjectURL(await (await request(url, {})).blob());
}

export function showStatus(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

/** `tag` with `className` and text `text`, appended to `parent` when given. */
export function element(tag, { className = "", text = "", parent = null } = {}) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text) made.textContent = text;
  if (parent) parent.append(made);
  return made;
}

export function formatDate(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatSeconds(seconds) {
  if (seconds < 90) return `${seconds.toFixed(0)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(0)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
