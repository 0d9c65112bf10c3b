// Gapless playback: a queue of float chunks played back to back at the context's rate.
// {type: "push", samples} appends; {type: "flush"} empties the queue at once (barge-in).
// Reports how many samples it has played, so the page knows audio really came out.
class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;
    this.played = 0;
    this.sinceReport = 0;
    this.port.onmessage = ({ data }) => {
      if (data.type === "push") this.queue.push(data.samples);
      else if (data.type === "flush") {
        this.queue = [];
        this.offset = 0;
      }
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let written = 0;
    while (written < out.length && this.queue.length) {
      const chunk = this.queue[0];
      const n = Math.min(out.length - written, chunk.length - this.offset);
      out.set(chunk.subarray(this.offset, this.offset + n), written);
      written += n;
      this.offset += n;
      if (this.offset === chunk.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    out.fill(0, written);
    this.played += written;
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 10) {
      this.sinceReport = 0;
      this.port.postMessage({ played: this.played, queued: this.queue.length });
    }
    return true;
  }
}

registerProcessor("playback-processor", PlaybackProcessor);
