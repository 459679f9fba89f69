// The one place the Studio talks to the server: /v1 with the key from session storage.

const KEY_ITEM = "voicereel.api_key";

/** An answer of the API that is not a success: its RFC 9457 problem. */
export class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.slug = (body.type || "").split("/").pop();
    this.title = body.title || "";
    this.errors = body.errors || [];
  }
}

export function savedKey() { return sessionStorage.getItem(KEY_ITEM); }
export function saveKey(key) { sessionStorage.setItem(KEY_ITEM, key); }
export function forgetKey() { sessionStorage.removeItem(KEY_ITEM); }

/** Calls `path` (under /v1) and returns its JSON (null for 204); throws Problem. */
export async function call(path, { method = "GET", json, form, key = savedKey() } = {}) {
  const headers = { Authorization: `Bearer ${key}`, Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  if (method === "POST") headers["Idempotency-Key"] = crypto.randomUUID();
  const answer = await fetch(`/v1${path}`, { method, headers, body, credentials: "omit" });
  if (answer.status === 204) return null;
  const data = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Problem(answer.status, data);
  return data;
}

/**
 * Follows the server-sent events of `path` (under /v1), calling `onEvent(name, data)` for
 * each; resolves when the server ends the stream. fetch rather than EventSource, which cannot
 * send the key in a header.
 */
export async function follow(path, onEvent, { signal, key = savedKey() } = {}) {
  const headers = { Authorization: `Bearer ${key}`, Accept: "text/event-stream" };
  const answer = await fetch(`/v1${path}`, { headers, signal, credentials: "omit" });
  if (!answer.ok) throw new Problem(answer.status, await answer.json().catch(() => ({})));
  const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) await onEvent(name, data.join("\n"));
    }
  }
}

/** Fetches a signed download URL (it carries its own proof, so no key is sent). */
export async function download(url) {
  const answer = await fetch(url, { credentials: "omit" });
  if (!answer.ok) throw new Error(`download failed: HTTP ${answer.status}`);
  return answer;
}

/** Plain words for the problems a person can act on. */
export function explain(problem) {
  const words = {
    unauthorized: "This key is not known to this server. Check that you pasted all of it.",
    "key-revoked": "This key was revoked. Ask an owner of the account for a new one.",
    "key-expired": "This key has expired. Ask an owner of the account for a new one.",
    "signature-missing": "This key requires signed requests, which the Studio cannot make. Use a key without request signing.",
    "scope-missing": "Your key's role may not do this.",
    "reference-too-short": "The recording holds too little speech.",
    "not-enough-speech": "The recording holds too little speech.",
    "reference-silent": "The recording is (nearly) silent: check the microphone or the file.",
    "reference-noise": "The recording sounds like noise rather than speech.",
    "reference-tone": "The recording is a steady tone, not speech.",
    "reference-too-long": "The recording is too long: trim it.",
    "audio-unreadable": "The file could not be read as audio: use WAV, FLAC, OGG or MP3.",
    "audio-unsupported": "The file's sample rate or number of channels is not accepted.",
    "payload-too-large": "The file is too large.",
    "rate-limited": "Too many requests: wait a moment and try again.",
  };
  const plain = words[problem.slug];
  return plain ? `${plain} (${problem.message})` : problem.message;
}
