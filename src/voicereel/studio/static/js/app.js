// VoiceReel Studio: views over the public /v1 API. No framework; one module per concern.

import { Problem, call, download, explain, follow, forgetKey, saveKey, savedKey } from "./api.js";
import { Player } from "./player.js";
import { Recorder } from "./recorder.js";
import { parseScreenplay } from "./screenplay.js";
import { makeZip } from "./zip.js";

const $ = (id) => document.getElementById(id);
const JOB_ITEM = "voicereel.job_id";
const POLL_MS = 400;
const VOICE_PAGE = 20;
const SEARCH_DELAY_MS = 250; // one search when typing pauses, not one per key
const VIEWS = ["signin", "voices", "script", "job", "export", "account"];

const state = {
  config: null,
  speakers: [], // every voice, for the speaker pickers
  voicePage: { items: [], cursor: null, query: "", asked: 0 },
  rows: [{ speaker_id: "", text: "", speed: 1, pause_after_ms: null }],
  droppedFile: null,
  toastAt: 0,
  polling: null,
  following: null, // the AbortController of the job events stream being read
  player: null,
};

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function toast(text) {
  $("toast").textContent = text;
  state.toastAt = Date.now();
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1048576).toFixed(1)} MB`;
}

function fmtSeconds(s) { return `${Number(s).toFixed(1)} s`; }

// ---------------------------------------------------------------- routing

function currentView() {
  const name = location.hash.replace(/^#\/?/, "") || "voices";
  return VIEWS.includes(name) ? name : "voices";
}

async function route(moveFocus = false) {
  const signedIn = Boolean(savedKey());
  const view = signedIn ? currentView() : "signin";
  $("nav").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `VoiceReel Studio: ${view === "signin" ? "sign in" : view}`;
  document.body.dataset.view = view;
  try {
    if (view === "voices") await showVoices();
    else if (view === "script") await showScript();
    else if (view === "job") await showJob();
    else if (view === "export") await showExport();
    else if (view === "account") await showAccount();
  } catch (err) {
    if (err instanceof Problem && err.status === 401) {
      signOut(explain(err));
      return;
    }
    toast(err instanceof Problem ? explain(err) : err.message);
  }
  document.body.dataset.ready = view;
  if (moveFocus) {
    // after a navigation, screen readers start at the new view's heading
    const heading = document.querySelector(`#view-${view} h2`);
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
}

function go(view) {
  if (location.hash === `#/${view}`) route();
  else location.hash = `#/${view}`;
}

// ---------------------------------------------------------------- sign in

async function signIn(event) {
  event.preventDefault();
  const key = $("signin-key").value.trim();
  const error = $("signin-error");
  error.textContent = "";
  if (!key) {
    error.textContent = "Paste your API key first.";
    return;
  }
  try {
    await call("/speakers?limit=1", { key });
  } catch (err) {
    // a billing key may not read voices but is a valid key
    if (!(err instanceof Problem && err.slug === "scope-missing")) {
      error.textContent = err instanceof Problem ? explain(err) : `The server cannot be reached (${err.message}).`;
      $("signin-key").setAttribute("aria-invalid", "true");
      return;
    }
  }
  $("signin-key").value = "";
  $("signin-key").removeAttribute("aria-invalid");
  saveKey(key);
  toast("Signed in.");
  go("voices");
}

function signOut(message = "") {
  forgetKey();
  sessionStorage.removeItem(JOB_ITEM);
  state.speakers = [];
  $("signin-error").textContent = message;
  toast(message ? "" : "Signed out.");
  go("signin");
}

// ---------------------------------------------------------------- voices

async function loadAllSpeakers() {
  const all = [];
  let cursor = null;
  const size = state.config.page_size_max;
  do {
    const page = await call(`/speakers?limit=${size}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    all.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  state.speakers = all;
  return all;
}

// The server searches (?name=) and pages (?cursor=): the list holds what it answered for the
// query in the search box, a page more at each "Load more".
async function loadVoicePage(reset) {
  if (reset) {
    state.voicePage = { items: [], cursor: null, query: $("voice-search").value.trim(),
      asked: state.voicePage.asked + 1 };
  }
  const { cursor, asked, query } = state.voicePage;
  const params = new URLSearchParams({ limit: String(VOICE_PAGE) });
  if (query) params.set("name", query);
  if (cursor) params.set("cursor", cursor);
  const page = await call(`/speakers?${params}`);
  if (state.voicePage.asked !== asked) return; // a newer search was typed meanwhile
  state.voicePage.items.push(...page.items);
  state.voicePage.cursor = page.next_cursor;
  renderVoices();
}

function renderVoices() {
  const shown = state.voicePage.items;
  $("voice-table").dataset.query = state.voicePage.query;
  $("voice-empty").textContent = state.voicePage.query ? "No voice has this in its name." : "No voices yet: register one.";
  $("voice-rows").replaceChildren(...shown.map((s) => el("tr", { dataset: { speaker: s.id } },
    el("td", {}, s.name),
    el("td", {}, s.lang),
    el("td", {}, fmtSeconds(s.speech_seconds)),
    el("td", { class: "nowrap" }, el("button", {
      type: "button", class: "small secondary", "aria-label": `Play ${s.name}'s reference`,
      onclick: () => playReference(s).catch((e) => toast(explain(e))),
    }, "Play"), el("button", {
      type: "button", class: "small danger", "aria-label": `Delete ${s.name}`,
      onclick: () => confirmDelete(s),
    }, "Delete")))));
  $("voice-empty").hidden = shown.length > 0;
  $("voice-more").hidden = !state.voicePage.cursor;
}

async function showVoices() {
  $("rec-counter").textContent = `Speech 0.0 of ${state.config.min_reference_speech_seconds} s · recorded 0.0 s`;
  document.querySelectorAll(".min-speech").forEach((n) => {
    n.textContent = String(state.config.min_reference_speech_seconds);
  });
  await loadVoicePage(true);
}

async function playReference(speaker) {
  const link = await call(`/speakers/${speaker.id}/reference`);
  $("reference-box").hidden = false;
  $("reference-title").textContent = `Reference recording of ${speaker.name}`;
  const player = $("reference-player");
  player.src = link.url;
  await player.play();
}

function confirmDelete(speaker) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = `Delete the voice "${speaker.name}" and its reference recording? This cannot be undone.`;
  dialog.returnValue = "";
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "ok") return;
    try {
      await call(`/speakers/${speaker.id}`, { method: "DELETE" });
      toast(`Deleted ${speaker.name}.`);
      await loadVoicePage(true);
    } catch (err) {
      toast(explain(err));
    }
  }, { once: true });
  dialog.showModal();
  $("confirm-cancel").focus();
}

function wireRecorder() {
  const need = () => state.config.min_reference_speech_seconds;
  const show = (rms, speech, seconds) => {
    $("rec-level").value = rms;
    $("rec-counter").textContent = `Speech ${speech.toFixed(1)} of ${need()} s · recorded ${seconds.toFixed(1)} s`;
  };
  let recorder = null;
  $("rec-start").addEventListener("click", async () => {
    $("voice-error").textContent = "";
    recorder = new Recorder(show);
    try {
      await recorder.start();
    } catch (err) {
      $("voice-error").textContent = `The microphone cannot be used (${err.message}).`;
      recorder = null;
      return;
    }
    $("rec-start").disabled = true;
    $("rec-stop").disabled = false;
    $("rec-stop").focus();
    document.body.dataset.recording = "on";
  });
  $("rec-stop").addEventListener("click", async () => {
    if (!recorder) return;
    $("rec-stop").disabled = true;
    const file = await recorder.stop();
    recorder = null;
    setVoiceFile(file);
    const preview = $("rec-preview");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    $("rec-start").disabled = false;
    document.body.dataset.recording = "done";
  });
}

function setVoiceFile(file) {
  state.droppedFile = file;
  $("voice-file-name").textContent = file ? `${file.name} (${fmtBytes(file.size)})` : "";
}

async function registerVoice(event) {
  event.preventDefault();
  const error = $("voice-error");
  error.textContent = "";
  const name = $("voice-name").value.trim();
  const file = state.droppedFile || $("voice-file").files[0];
  if (!name) { error.textContent = "Give the voice a name."; $("voice-name").focus(); return; }
  if (!file) { error.textContent = "Choose or drop a reference recording."; return; }
  const form = new FormData();
  form.append("name", name);
  form.append("lang", $("voice-lang").value.trim() || "en");
  form.append("transcript", $("voice-transcript").value);
  form.append("audio", file, file.name);
  const button = $("voice-submit");
  button.disabled = true;
  button.textContent = "Checking the recording…";
  try {
    const speaker = await call("/speakers", { method: "POST", form });
    toast(`Registered ${speaker.name}: ${fmtSeconds(speaker.speech_seconds)} of speech.`);
    $("voice-form").reset();
    setVoiceFile(null);
    await loadVoicePage(true);
  } catch (err) {
    error.textContent = err instanceof Problem ? explain(err) : err.message;
    error.dataset.problem = err instanceof Problem ? err.slug : "";
  } finally {
    button.disabled = false;
    button.textContent = "Register";
  }
}

function wireDropZone() {
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) setVoiceFile(file);
  });
  $("voice-file").addEventListener("change", () => setVoiceFile($("voice-file").files[0] || null));
}

// ---------------------------------------------------------------- script editor

async function showScript() {
  await loadAllSpeakers();
  renderRows();
}

function speakerOptions(selected) {
  return [el("option", { value: "" }, "Choose…"),
    ...state.speakers.map((s) => el("option", { value: s.id, selected: s.id === selected }, s.name))];
}

function renderRows() {
  const body = $("script-rows");
  body.replaceChildren(...state.rows.map((row, i) => {
    const n = i + 1;
    const update = (field, parse) => (e) => {
      row[field] = parse(e.target.value);
      e.target.removeAttribute("aria-invalid"); // the API's verdict was on the old value
      const error = $(`row-${i}-${field}-error`);
      if (error) error.textContent = "";
      renderCounts();
    };
    return el("tr", { dataset: { row: String(i) } },
      el("td", {}, String(n)),
      el("td", {}, el("select", {
        "aria-label": `Row ${n} speaker`, class: "row-speaker",
        onchange: update("speaker_id", String),
      }, speakerOptions(row.speaker_id)), el("p", { class: "row-error", id: `row-${i}-speaker_id-error` })),
      el("td", {}, (() => {
        const area = el("textarea", {
          rows: "2", "aria-label": `Row ${n} text`, class: "row-text",
          "aria-describedby": `row-${i}-text-error`, oninput: update("text", String),
        });
        area.value = row.text;
        return area;
      })(), el("p", { class: "row-error", id: `row-${i}-text-error` })),
      el("td", {}, el("input", {
        type: "number", min: "0.5", max: "2", step: "0.1", value: String(row.speed),
        "aria-label": `Row ${n} speed`, class: "row-speed",
        oninput: update("speed", Number),
      }), el("p", { class: "row-error", id: `row-${i}-speed-error` })),
      el("td", {}, el("input", {
        type: "number", min: "0", max: String(state.config.max_pause_ms), step: "50",
        value: row.pause_after_ms === null ? "" : String(row.pause_after_ms),
        placeholder: "250", "aria-label": `Row ${n} pause after, milliseconds`, class: "row-pause",
        oninput: update("pause_after_ms", (v) => (v === "" ? null : Number(v))),
      }), el("p", { class: "row-error", id: `row-${i}-pause_after_ms-error` })),
      el("td", { class: "nowrap" },
        el("button", { type: "button", class: "small secondary", "aria-label": `Move row ${n} up`,
          disabled: i === 0, onclick: () => moveRow(i, -1) }, "↑"),
        el("button", { type: "button", class: "small secondary", "aria-label": `Move row ${n} down`,
          disabled: i === state.rows.length - 1, onclick: () => moveRow(i, 1) }, "↓"),
        el("button", { type: "button", class: "small secondary", "aria-label": `Remove row ${n}`,
          disabled: state.rows.length === 1, onclick: () => { state.rows.splice(i, 1); renderRows(); } }, "✕")));
  }));
  renderCounts();
}

function moveRow(i, by) {
  const [row] = state.rows.splice(i, 1);
  state.rows.splice(i + by, 0, row);
  renderRows();
}

function renderCounts() {
  const c = state.config;
  const chars = state.rows.reduce((n, r) => n + r.text.length, 0);
  const longest = Math.max(0, ...state.rows.map((r) => r.text.length));
  const part = (text, over) => el("span", { class: over ? "over" : "" }, text);
  $("script-counts").replaceChildren(
    part(`${state.rows.length} of ${c.max_script_lines} lines`, state.rows.length > c.max_script_lines), " · ",
    part(`${chars} of ${c.max_script_chars} characters`, chars > c.max_script_chars), " · ",
    part(`longest line ${longest} of ${c.max_line_chars}`, longest > c.max_line_chars));
}

function clearRowErrors() {
  document.querySelectorAll("#script-rows .row-error").forEach((p) => { p.textContent = ""; });
  document.querySelectorAll("#script-rows [aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
  $("render-error").textContent = "";
}

function showProblem(err) {
  const general = [];
  for (const e of err.errors) {
    const loc = e.loc || [];
    if (loc[0] === "body" && loc[1] === "script" && Number.isInteger(loc[2])) {
      const field = ["speaker_id", "text", "speed", "pause_after_ms"].includes(loc[3]) ? loc[3] : "text";
      const target = $(`row-${loc[2]}-${field}-error`);
      if (target) {
        target.textContent = `Row ${loc[2] + 1}: ${e.msg}`;
        const input = target.previousElementSibling;
        if (input) input.setAttribute("aria-invalid", "true");
        continue;
      }
    }
    general.push(e.msg);
  }
  $("render-error").textContent = general.length ? `${err.message}: ${general.join("; ")}` : err.message;
}

function applyPaste() {
  const { rows, problems } = parseScreenplay($("paste-text").value, state.speakers);
  $("paste-error").textContent = problems.join("; ");
  if (problems.length || !rows.length) {
    if (!rows.length && !problems.length) $("paste-error").textContent = "Nothing to paste.";
    return;
  }
  state.rows = rows;
  renderRows();
  $("paste-box").open = false;
  toast(`Replaced the script with ${rows.length} rows.`);
}

async function render(event) {
  event.preventDefault();
  clearRowErrors();
  const formats = [...document.querySelectorAll("#render-form fieldset input:checked")].map((i) => i.value);
  const body = {
    script: state.rows.map((r) => {
      const line = { speaker_id: r.speaker_id, text: r.text, speed: r.speed };
      if (r.pause_after_ms !== null) line.pause_after_ms = r.pause_after_ms;
      return line;
    }),
    output: { format: $("out-format").value, stems: $("out-stems").checked },
    captions: { formats: [...formats, "json"], style: $("out-style").value },
  };
  const button = $("render-submit");
  button.disabled = true;
  try {
    const accepted = await call("/synthesize", { method: "POST", json: body });
    sessionStorage.setItem(JOB_ITEM, accepted.job_id);
    toast(`Rendering ${accepted.job_id}.`);
    go("job");
  } catch (err) {
    if (err instanceof Problem) showProblem(err);
    else $("render-error").textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- job, player, fixes

function stopPolling() {
  if (state.polling) clearTimeout(state.polling);
  state.polling = null;
  if (state.following) state.following.abort();
  state.following = null;
}

const unfinished = (job) => job.status === "queued" || job.status === "running";

function showProgress(job) {
  const percent = Math.round((job.status === "succeeded" ? 1 : job.progress) * 100);
  $("job-progress").value = percent;
  $("job-progress-text").textContent = `${percent} %`;
  $("job-id").textContent = job.id;
  $("job-revision").textContent = String(job.revision);
  $("job-status").textContent = job.status;
  $("job-error").textContent = job.error || "";
}

async function showJob() {
  stopPolling();
  const id = sessionStorage.getItem(JOB_ITEM);
  $("job-none").hidden = Boolean(id);
  $("job-panel").hidden = !id;
  if (!id) return;
  await poll(id);
}

// The job's events move the bar as each line renders; resolves once its state is shown (and,
// for a finished job, its result loaded). A stream that ends at the server's time limit before
// the job finishes is followed again.
async function poll(id) {
  stopPolling();
  const following = new AbortController();
  state.following = following;
  let job = null;
  let shown;
  const first = new Promise((resolve) => { shown = resolve; });
  const done = follow(`/jobs/${id}/events`, async (name, data) => {
    if (name !== "job") return;
    job = JSON.parse(data);
    showProgress(job);
    if (unfinished(job)) $("player-card").hidden = true;
    shown();
  }, { signal: following.signal }).then(async () => {
    if (following.signal.aborted || !job) return;
    if (unfinished(job)) {
      state.polling = setTimeout(() => poll(id).catch((e) => toast(e.message)), POLL_MS);
    } else if (job.status === "succeeded") {
      await loadResult(job);
    }
  });
  const failed = done.catch((err) => {
    if (!following.signal.aborted) throw err;
  });
  await Promise.race([first, failed]);
  if (job && !unfinished(job)) await failed;
  else failed.catch((e) => toast(e.message));
}

async function loadResult(job) {
  const revisions = (await call(`/jobs/${job.id}/revisions`)).revisions;
  const latest = revisions[revisions.length - 1];
  await playRevision(latest);
  renderFixRows(job, latest);
  renderRevisions(revisions);
}

async function playRevision(revision) {
  $("player-card").hidden = false;
  if (!state.player) {
    state.player = new Player({ audio: $("player"), canvas: $("waveform"), captions: $("captions"), legend: $("lane-legend") });
  }
  const captions = await (await download(revision.captions.json.url)).json();
  await state.player.load(revision.result.audio.url, captions);
  $("player-card").dataset.revision = String(revision.number);
}

function renderFixRows(job, revision) {
  const names = new Map(state.speakers.map((s) => [s.id, s.name]));
  const script = revision.request.script;
  $("fix-card").hidden = false;
  $("fix-rows").replaceChildren(...script.map((line, i) => {
    const area = el("textarea", { rows: "2", id: `fix-${i}`, class: "fix-text" });
    area.value = line.text;
    return el("li", { dataset: { line: String(i) } },
      el("label", { for: `fix-${i}` }, `Line ${i + 1}: ${names.get(line.speaker_id) || line.speaker_id}`),
      area,
      el("div", { class: "row-buttons" },
        el("button", { type: "button", class: "small", onclick: () => revise(job.id, [{ line: i, text: area.value }]) },
          `Re-render line ${i + 1}`),
        el("button", { type: "button", class: "small secondary", onclick: () => revise(job.id, [{ line: i, retake: true }]) },
          `Retake line ${i + 1}`)));
  }));
}

async function revise(jobId, edits) {
  $("fix-error").textContent = "";
  try {
    const answer = await call(`/jobs/${jobId}/revisions`, { method: "POST", json: { edits } });
    const lines = answer.lines_to_render.map((i) => i + 1).join(", ") || "none";
    toast(`Revision ${answer.revision}: rendering line(s) ${lines} only.`);
    $("job-panel").dataset.linesToRender = answer.lines_to_render.join(",");
    await poll(jobId);
  } catch (err) {
    $("fix-error").textContent = err instanceof Problem ? explain(err) : err.message;
  }
}

function renderRevisions(revisions) {
  $("revisions-card").hidden = false;
  $("revision-rows").replaceChildren(...[...revisions].reverse().map((r) => el("tr", { dataset: { revision: String(r.number) } },
    el("td", {}, String(r.number) + (r.latest ? " (latest)" : "")),
    el("td", {}, r.status),
    el("td", {}, `${r.characters} characters`),
    el("td", {}, r.result
      ? [el("button", { type: "button", class: "small secondary", "aria-label": `Play revision ${r.number}`,
        onclick: () => playRevision(r).catch((e) => toast(e.message)) }, "Play"),
      el("a", { href: r.result.audio.url, download: "" }, "Download")]
      : el("span", { class: "muted" }, r.files_kept ? "—" : "files removed")))));
}

// ---------------------------------------------------------------- export

function fileName(url, fallback) {
  return new URL(url, location.href).searchParams.get("name") || fallback;
}

function exportFiles(job) {
  const r = job.result;
  const files = [{ kind: "audio", label: `Audio (${r.audio.content_type})`, link: r.audio, folder: "" }];
  for (const [kind, link] of Object.entries(r.captions)) files.push({ kind, label: `Captions: ${kind}`, link, folder: "captions/" });
  for (const [kind, link] of Object.entries(r.stems)) {
    const name = state.speakers.find((s) => s.id === kind)?.name || kind;
    files.push({ kind, label: `Stem: ${name}`, link, folder: "stems/" });
  }
  return files.map((f) => ({ ...f, name: f.folder + fileName(f.link.url, f.kind) }));
}

// Two revisions sound alike, whatever their format, when they assemble the same takes the
// same way.
function sameAudio(a, b) {
  const key = (r) => JSON.stringify([r.request.script, r.request.lexicons || [],
    r.request.output.sample_rate, r.request.output.loudness_lufs, r.request.captions.fit]);
  return key(a) === key(b);
}

// For each format the API encodes, the newest kept revision that holds this audio in it.
function audioFormats(revisions) {
  const latest = revisions[revisions.length - 1];
  const made = new Map();
  for (const r of revisions) { // oldest first: a newer revision of a format wins
    if (r.result && sameAudio(r, latest)) made.set(r.request.output.format, r);
  }
  return state.config.audio_formats.map((format) => ({ format, revision: made.get(format) || null }));
}

async function waitForJob(id) {
  for (;;) {
    const job = await call(`/jobs/${id}`);
    if (job.status !== "queued" && job.status !== "running") return job;
    await new Promise((done) => { setTimeout(done, POLL_MS); });
  }
}

// A revision with no edits, only a new output or captions: the same takes assembled again.
async function reviseFiles(job, body, doing, done) {
  const status = $("export-status");
  const buttons = document.querySelectorAll("#format-rows button, #export-restyle");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const answer = await call(`/jobs/${job.id}/revisions`, { method: "POST", json: body });
    $("export-panel").dataset.linesToRender = answer.lines_to_render.join(",");
    status.textContent = `${doing} as revision ${answer.revision}…`;
    const finished = await waitForJob(job.id);
    if (finished.status !== "succeeded") throw new Error(finished.error || `the revision ${finished.status}`);
    await showExport();
    status.textContent = `Revision ${answer.revision} ${done}.`;
  } catch (err) {
    status.textContent = err instanceof Problem ? explain(err) : err.message;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function makeFormat(job, latest, format) {
  // the whole output as it is, but the format: a new rate or loudness would render anew
  const output = { ...latest.request.output, format };
  const name = format.toUpperCase();
  return reviseFiles(job, { output }, `Encoding ${name}`, `holds the audio in ${name}`);
}

function restyle(job, latest) {
  const style = $("export-style").value;
  const captions = { ...latest.request.captions, style };
  return reviseFiles(job, { captions }, `Writing the ${style} captions`, `holds the captions in the ${style} style`);
}

function renderFormats(job, revisions) {
  const latest = revisions[revisions.length - 1];
  $("format-rows").replaceChildren(...audioFormats(revisions).map(({ format, revision }) => el("tr", { dataset: { format } },
    el("td", {}, format.toUpperCase()),
    el("td", {}, revision
      ? el("a", { href: revision.result.audio.url, download: "" },
        `Download ${format.toUpperCase()} (revision ${revision.number}${revision.latest ? ", latest" : ""})`)
      : el("button", { type: "button", class: "small secondary", onclick: () => makeFormat(job, latest, format) },
        `Make ${format.toUpperCase()}`)))));
}

async function showExport() {
  const id = sessionStorage.getItem(JOB_ITEM);
  const job = id ? await call(`/jobs/${id}`) : null;
  const ready = job && job.status === "succeeded";
  $("export-none").hidden = Boolean(ready);
  $("export-panel").hidden = !ready;
  if (!ready) return;
  if (!state.speakers.length) await loadAllSpeakers();
  const revisions = (await call(`/jobs/${id}/revisions`)).revisions;
  renderFormats(job, revisions);
  const latest = revisions[revisions.length - 1];
  $("export-style").replaceChildren(...state.config.caption_styles.map((style) => el("option", {
    value: style, selected: style === latest.request.captions.style }, style)));
  $("export-restyle").onclick = () => restyle(job, latest);
  const files = exportFiles(job);
  // the zip also holds the audio in every other format already made
  const names = new Set(files.map((f) => f.name));
  for (const { format, revision } of audioFormats(revisions)) {
    if (!revision || revision.number === job.revision) continue;
    let name = fileName(revision.result.audio.url, `audio.${format}`);
    if (names.has(name)) name = `r${revision.number}-${name}`;
    names.add(name);
    files.push({ kind: format, label: `Audio (${revision.result.audio.content_type}, revision ${revision.number})`,
      link: revision.result.audio, folder: "", name, listed: false });
  }
  const minutes = Math.round((new Date(job.result.expires_at) - Date.now()) / 60000);
  $("export-ttl").textContent = `about ${minutes} minutes`;
  $("export-rows").replaceChildren(...files.filter((f) => f.listed !== false).map((f) => el("tr", {},
    el("td", {}, el("a", { href: f.link.url, download: "" }, f.label)),
    el("td", {}, f.link.content_type),
    el("td", {}, fmtBytes(f.link.size_bytes)))));
  $("export-zip").onclick = () => downloadZip(job, files);
}

async function downloadZip(job, files) {
  const status = $("export-status");
  status.textContent = `Fetching ${files.length} files…`;
  const entries = [];
  for (const f of files) {
    const bytes = new Uint8Array(await (await download(f.link.url)).arrayBuffer());
    entries.push({ name: f.name, bytes });
  }
  const blob = makeZip(entries);
  const a = el("a", { href: URL.createObjectURL(blob), download: `${job.id}-r${job.revision}.zip` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  status.textContent = `Saved ${job.id}-r${job.revision}.zip (${files.length} files, ${fmtBytes(blob.size)}).`;
}

// ---------------------------------------------------------------- account

async function showAccount() {
  $("usage-error").textContent = "";
  try {
    const usage = await call("/usage");
    const t = usage.totals;
    $("usage-totals").replaceChildren(
      el("div", {}, el("dt", {}, "Characters"), el("dd", { id: "usage-characters" }, String(t.characters))),
      el("div", {}, el("dt", {}, "Audio minutes"), el("dd", {}, (t.audio_seconds / 60).toFixed(1))),
      el("div", {}, el("dt", {}, "Jobs"), el("dd", {}, String(t.jobs))));
    renderChart(usage);
  } catch (err) {
    $("usage-error").textContent = explain(err);
  }
  let owner = true;
  try {
    const keys = await call("/keys");
    $("key-rows").replaceChildren(...keys.items.map((k) => el("tr", {},
      el("td", { class: "mono" }, k.prefix), el("td", {}, k.name), el("td", {}, k.role),
      el("td", {}, k.last_used_at ? new Date(k.last_used_at).toLocaleString() : "never"),
      el("td", {}, k.revoked_at ? "revoked" : k.expires_at && new Date(k.expires_at) < new Date() ? "expired" : "active"))));
    const audit = await call("/audit?limit=20");
    $("audit-rows").replaceChildren(...audit.items.map((a) => el("tr", {},
      el("td", {}, new Date(a.at).toLocaleString()), el("td", { class: "mono" }, a.action),
      el("td", { class: "mono" }, a.resource_id || ""), el("td", { class: "mono" }, a.key_prefix),
      el("td", {}, `${a.status} ${a.outcome}`))));
  } catch (err) {
    if (!(err instanceof Problem && err.status === 403)) throw err;
    owner = false;
  }
  $("keys-card").hidden = !owner;
  $("audit-card").hidden = !owner;
  $("owner-note").hidden = owner;
}

function renderChart(usage) {
  const [year, month] = usage.month.split("-").map(Number);
  const days = new Date(year, month, 0).getDate();
  const perDay = new Array(days).fill(0);
  for (const d of usage.days) perDay[Number(d.date.slice(8, 10)) - 1] += d.characters;
  const top = Math.max(1, ...perDay);
  const chart = $("usage-chart");
  chart.setAttribute("aria-label", `Characters per day in ${usage.month}: ` +
    perDay.map((n, i) => (n ? `day ${i + 1}: ${n}` : null)).filter(Boolean).join(", ") || "none yet");
  chart.replaceChildren(...perDay.map((n, i) => {
    const bar = el("div", { class: "bar", title: `${usage.month}-${String(i + 1).padStart(2, "0")}: ${n} characters` });
    bar.style.height = `${(100 * n) / top}%`; // CSSOM, allowed by the style-src policy
    return bar;
  }));
}

// ---------------------------------------------------------------- start

async function start() {
  state.config = await (await fetch("config.json")).json();
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("voice-form").addEventListener("submit", registerVoice);
  let searching = null;
  $("voice-search").addEventListener("input", () => {
    clearTimeout(searching);
    searching = setTimeout(() => loadVoicePage(true).catch((e) => toast(explain(e))), SEARCH_DELAY_MS);
  });
  $("voice-more").addEventListener("click", () => loadVoicePage(false).catch((e) => toast(e.message)));
  wireDropZone();
  wireRecorder();
  $("row-add").addEventListener("click", () => {
    state.rows.push({ speaker_id: state.rows.at(-1)?.speaker_id || "", text: "", speed: 1, pause_after_ms: null });
    renderRows();
  });
  $("paste-apply").addEventListener("click", applyPaste);
  $("paste-file").addEventListener("change", async () => {
    const file = $("paste-file").files[0];
    if (file) $("paste-text").value = await file.text();
  });
  $("render-form").addEventListener("submit", render);
  window.addEventListener("hashchange", () => {
    stopPolling();
    // a message said just before this navigation is about it; older ones are not
    if (Date.now() - (state.toastAt || 0) > 1000) toast("");
    route(true);
  });
  await route();
}

start();
