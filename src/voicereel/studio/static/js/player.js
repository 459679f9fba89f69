// The player: audio, a waveform with one lane per speaker, and captions whose current word is
// highlighted while the audio plays (times from the caption JSON, exact to the sample).

import { download } from "./api.js";

// the .swatch-N colours of studio.css, for the canvas
export const LANE_COLOURS = ["#0b5cad", "#b3541e", "#1d6b2f", "#6f2da8", "#8a6d00", "#a4001d"];

export class Player {
  constructor({ audio, canvas, captions, legend }) {
    this.audio = audio;
    this.canvas = canvas;
    this.captionsBox = captions;
    this.legend = legend;
    this.words = []; // [{el, start, end, line}]
    this.lines = [];
    this.current = -1;
    this.frame = null;
    this.peaks = null;
    audio.addEventListener("play", () => this.loop());
    audio.addEventListener("pause", () => this.stopLoop());
    audio.addEventListener("ended", () => this.stopLoop());
    audio.addEventListener("seeked", () => { this.highlight(); this.draw(); });
    audio.addEventListener("timeupdate", () => this.highlight());
    canvas.addEventListener("click", (e) => {
      if (!this.captions) return;
      const box = canvas.getBoundingClientRect();
      this.seek(((e.clientX - box.left) / box.width) * this.captions.duration);
    });
  }

  /** Loads the audio at `url` and its caption JSON. */
  async load(url, captions) {
    this.stopLoop();
    this.captions = captions;
    this.speakerIds = Object.keys(captions.speakers);
    this.audio.src = url;
    this.renderCaptions();
    this.renderLegend();
    this.peaks = null;
    this.draw();
    const bytes = await (await download(url)).arrayBuffer();
    // an offline context decodes without needing to start audio output (no autoplay prompt)
    const decoded = await new OfflineAudioContext(1, 1, 24000).decodeAudioData(bytes);
    this.peaks = { data: decoded.getChannelData(0), rate: decoded.sampleRate };
    this.draw();
  }

  lane(speakerId) { return Math.max(0, this.speakerIds.indexOf(speakerId)); }

  renderLegend() {
    this.legend.replaceChildren(...this.speakerIds.map((id) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = `swatch swatch-${this.lane(id) % LANE_COLOURS.length}`;
      item.append(swatch, this.captions.speakers[id]);
      return item;
    }));
  }

  renderCaptions() {
    this.words = [];
    this.lines = [];
    this.current = -1;
    const rows = this.captions.segments.map((segment, s) => {
      const row = document.createElement("div");
      row.className = "cap-line";
      row.dataset.segment = String(s);
      const seek = document.createElement("button");
      seek.type = "button";
      seek.className = "seek secondary";
      seek.textContent = `${segment.speaker} ${segment.start.toFixed(1)} s`;
      seek.setAttribute("aria-label", `${seek.textContent}: play line ${s + 1} from here`);
      seek.addEventListener("click", () => this.seek(segment.start));
      const words = document.createElement("p");
      words.className = "words";
      words.lang = "en";
      segment.words.forEach((w, i) => {
        const span = document.createElement("span");
        span.className = "word";
        span.textContent = w.text;
        span.dataset.index = String(this.words.length);
        span.addEventListener("click", () => this.seek(w.start));
        this.words.push({ el: span, start: w.start, end: w.end, line: row });
        words.append(span, i < segment.words.length - 1 ? " " : "");
      });
      this.lines.push({ el: row, start: segment.start, end: segment.end });
      row.append(seek, words);
      return row;
    });
    this.captionsBox.replaceChildren(...rows);
  }

  seek(seconds) {
    this.audio.currentTime = seconds + 0.001; // inside the word, not on its edge
    this.highlight();
  }

  /** Marks the word being spoken at the audio's time (the last one begun, within a line). */
  highlight() {
    const t = this.audio.currentTime;
    let found = -1;
    for (let i = 0; i < this.words.length && this.words[i].start <= t; i++) found = i;
    if (found >= 0 && t > this.words[found].end + 0.25) found = -1; // in a pause between lines
    if (found === this.current) return;
    if (this.current >= 0) {
      this.words[this.current].el.classList.remove("current");
      this.words[this.current].line.classList.remove("active");
    }
    this.current = found;
    if (found >= 0) {
      const word = this.words[found];
      word.el.classList.add("current");
      word.line.classList.add("active");
      this.captionsBox.dataset.current = String(found);
    }
  }

  loop() {
    this.stopLoop();
    const step = () => {
      this.highlight();
      this.draw();
      this.frame = requestAnimationFrame(step);
    };
    this.frame = requestAnimationFrame(step);
  }

  stopLoop() {
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
  }

  /** Lanes per speaker, each segment's waveform in its speaker's lane, and the play head. */
  draw() {
    const c = this.canvas.getContext("2d");
    const { width, height } = this.canvas;
    c.fillStyle = "#ffffff";
    c.fillRect(0, 0, width, height);
    if (!this.captions) return;
    const lanes = Math.max(1, this.speakerIds.length);
    const laneH = height / lanes;
    const duration = this.captions.duration || 1;
    const x = (t) => (t / duration) * width;
    this.speakerIds.forEach((id, lane) => {
      c.fillStyle = lane % 2 ? "#f4f6f8" : "#fbfcfd";
      c.fillRect(0, lane * laneH, width, laneH);
      c.fillStyle = "#1a1a1a";
      c.font = "12px system-ui, sans-serif";
      c.fillText(this.captions.speakers[id], 4, lane * laneH + 14);
    });
    for (const segment of this.captions.segments) {
      const lane = this.lane(segment.speaker_id);
      const colour = LANE_COLOURS[lane % LANE_COLOURS.length];
      const mid = lane * laneH + laneH / 2;
      c.fillStyle = colour;
      if (!this.peaks) {
        c.fillRect(x(segment.start), mid - 2, Math.max(1, x(segment.end) - x(segment.start)), 4);
        continue;
      }
      const { data, rate } = this.peaks;
      const perPixel = (duration * rate) / width;
      for (let px = Math.floor(x(segment.start)); px < Math.ceil(x(segment.end)); px++) {
        const from = Math.floor(px * perPixel);
        const to = Math.min(data.length, Math.floor((px + 1) * perPixel));
        let peak = 0;
        for (let i = from; i < to; i++) peak = Math.max(peak, Math.abs(data[i]));
        const h = Math.max(1, peak * (laneH - 8));
        c.fillRect(px, mid - h / 2, 1, h);
      }
    }
    c.fillStyle = "#a4001d";
    c.fillRect(x(this.audio.currentTime) - 1, 0, 2, height);
  }
}
