// Recording a reference in the browser: MediaRecorder for the take, an analyser for the live
// level meter and a rough speech counter, and the take turned into a WAV file for the upload
// (the API reads WAV, FLAC, OGG and MP3; Chromium records WebM).

const SPEECH_RMS = 0.02; // a frame this loud counts as speech in the counter (a hint only)

export class Recorder {
  /** `onLevel(rms, speechSeconds, seconds)` is called about 60 times a second. */
  constructor(onLevel) {
    this.onLevel = onLevel;
    this.chunks = [];
  }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    this.context = new AudioContext();
    const source = this.context.createMediaStreamSource(this.stream);
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 2048;
    source.connect(this.analyser);
    this.recorder = new MediaRecorder(this.stream);
    this.chunks = [];
    this.recorder.addEventListener("dataavailable", (e) => this.chunks.push(e.data));
    this.recorder.start(250);
    this.started = performance.now();
    this.speech = 0;
    this.last = this.started;
    const frame = new Float32Array(this.analyser.fftSize);
    const tick = (now) => {
      this.analyser.getFloatTimeDomainData(frame);
      let sum = 0;
      for (const v of frame) sum += v * v;
      const rms = Math.sqrt(sum / frame.length);
      if (rms > SPEECH_RMS) this.speech += (now - this.last) / 1000;
      this.last = now;
      this.onLevel(rms, this.speech, (now - this.started) / 1000);
      this.frame = requestAnimationFrame(tick);
    };
    this.frame = requestAnimationFrame(tick);
  }

  /** Stops and returns the take as a WAV File. */
  async stop() {
    cancelAnimationFrame(this.frame);
    const stopped = new Promise((resolve) => this.recorder.addEventListener("stop", resolve, { once: true }));
    this.recorder.stop();
    await stopped;
    this.stream.getTracks().forEach((t) => t.stop());
    await this.context.close();
    const recorded = new Blob(this.chunks, { type: this.recorder.mimeType });
    const decoded = await new OfflineAudioContext(1, 1, 48000).decodeAudioData(await recorded.arrayBuffer());
    return new File([wavBytes(decoded.getChannelData(0), decoded.sampleRate)], "recording.wav", { type: "audio/wav" });
  }
}

/** 16-bit mono PCM WAV of `samples` (floats in -1..1). */
export function wavBytes(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, samples.length * 2, true);
  samples.forEach((v, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, v)) * 0x7fff, true));
  return view.buffer;
}
