// The voice page: protocol v1 (docs/protocol.md) over one WebSocket.
// Microphone -> capture worklet -> PCM16 binary frames; binary frames -> playback worklet.
// The page asks the server for audio at the AudioContext's own rate in both directions,
// so all resampling happens on the server. The context is made at load (browsers keep it
// suspended until the first click) so its rate is known before connecting.

const $ = (id) => document.getElementById(id);
const conversation = $("conversation");

// Read by the browser test; handy in the console too.
const stats = (window.voiceStats = {
  state: "connecting", sessions: 0, sentFrames: 0, audioFrames: 0,
  playedSamples: 0, interruptions: 0, events: [],
});

let ws = null;
let session = null;
let audio = null; // { context, playback, capture, stream }, set up before connecting
let muted = false;
let retryDelay = 500;
const bubbles = new Map(); // content_id -> element
// A token in the page's own URL (/?token=...) goes on to the socket's: browsers cannot set
// headers on a WebSocket.
const token = new URLSearchParams(location.search).get("token");
const tools = new Map(); // tool_use_id -> element

function socketUrl() {
  // Relative to the page, so it works under a path prefix and over https (wss).
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("audio", "binary");
  if (token) url.searchParams.set("token", token);
  if (audio) {
    url.searchParams.set("input_sample_rate", audio.context.sampleRate);
    url.searchParams.set("output_sample_rate", audio.context.sampleRate);
  }
  return url;
}

function setStatus(state, text) {
  stats.state = state;
  $("status").dataset.state = state;
  $("status").textContent = text || state;
}

function scrollDown() {
  conversation.scrollTop = conversation.scrollHeight;
}

function add(className, text) {
  const el = document.createElement("div");
  el.className = className;
  el.textContent = text;
  conversation.append(el);
  scrollDown();
  return el;
}

// A refused handshake (HTTP 401/403/503) reaches a page only as close 1006, the same as an
// unreachable server: if the server answers /ping, it was up and said no.
async function serverAnswers() {
  try {
    return (await fetch(new URL("ping", location.href), { cache: "no-store" })).ok;
  } catch {
    return false;
  }
}

function connect() {
  setStatus("connecting", "connecting…");
  let opened = false;
  ws = new WebSocket(socketUrl());
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    opened = true;
    retryDelay = 500;
  };
  ws.onmessage = ({ data }) => (typeof data === "string" ? onEvent(JSON.parse(data)) : onAudio(data));
  ws.onclose = async (event) => {
    session = null;
    if (!opened && (await serverAnswers())) {
      setStatus("refused", token ? "refused: check the token" : "refused: a token may be needed");
      add("error", "The server refused the connection: a missing or wrong token (?token=… in the page URL), " +
        "a page from another origin, or a full server. Fix the URL and reload.");
      return; // retrying would be refused alike
    }
    setStatus("closed", `disconnected (${event.code})`);
    if (event.code === 1008 || event.code === 1003) return; // refused: retrying would not help
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 8000);
  };
}

function onEvent(message) {
  stats.events.push(message.type);
  switch (message.type) {
    case "session_start":
      session = message;
      stats.sessions++;
      setStatus("open", "connected");
      $("model").textContent = `${message.provider} · ${message.model}`;
      break;
    case "transcript":
    case "text":
      showTranscript(message);
      break;
    case "tool_use": {
      const el = add("bubble tool", `tool ${message.name}(${JSON.stringify(message.input)})`);
      tools.set(message.tool_use_id, el);
      break;
    }
    case "tool_result": {
      const el = tools.get(message.tool_use_id) || add("bubble tool", message.name);
      const result = document.createElement("div");
      result.className = `result ${message.status}`;
      result.textContent = `→ ${message.content}`;
      el.append(result);
      scrollDown();
      break;
    }
    case "interruption":
      stats.interruptions++;
      if (audio) audio.playback.port.postMessage({ type: "flush" });
      break;
    case "error":
      add("error", `${message.code}: ${message.message}`);
      break;
    case "connection_restart":
      add("note", "the model connection was renewed");
      break;
  }
}

function showTranscript(message) {
  let el = bubbles.get(message.content_id);
  if (!el) {
    el = add(`bubble ${message.role}`, "");
    bubbles.set(message.content_id, el);
  }
  el.textContent = message.text;
  el.classList.toggle("partial", !message.final);
  if (message.final) bubbles.delete(message.content_id);
  scrollDown();
}

function onAudio(buffer) {
  stats.audioFrames++;
  if (!audio || audio.context.state !== "running") return; // before the first click nothing can play
  const pcm = new Int16Array(buffer);
  const samples = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
  audio.playback.port.postMessage({ type: "push", samples }, [samples.buffer]);
}

async function setupAudio() {
  const context = new AudioContext();
  const base = new URL(".", import.meta.url);
  await context.audioWorklet.addModule(new URL("playback-worklet.js", base));
  await context.audioWorklet.addModule(new URL("capture-worklet.js", base));
  const playback = new AudioWorkletNode(context, "playback-processor", { outputChannelCount: [1] });
  playback.connect(context.destination);
  playback.port.onmessage = ({ data }) => {
    stats.playedSamples = data.played;
    $("speaking").hidden = data.queued === 0;
  };
  audio = { context, playback, capture: null, stream: null };
}

async function startMicrophone() {
  const { context } = audio;
  await context.resume(); // a click is the user gesture browsers require for sound
  try {
    audio.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (error) {
    add("error", `microphone: ${error.message}`);
    return;
  }
  const source = context.createMediaStreamSource(audio.stream);
  audio.capture = new AudioWorkletNode(context, "capture-processor", { numberOfInputs: 1, numberOfOutputs: 0 });
  audio.capture.port.onmessage = ({ data }) => {
    $("level").style.width = `${Math.min(100, data.level * 400)}%`;
    if (!muted && session && ws.readyState === WebSocket.OPEN) {
      ws.send(data.pcm);
      stats.sentFrames++;
    }
  };
  source.connect(audio.capture);
  $("mic").disabled = true;
  $("mic").textContent = "Microphone on";
  $("mute").disabled = false;
}

$("mic").addEventListener("click", () => startMicrophone());
$("mute").addEventListener("click", () => {
  muted = !muted;
  $("mute").textContent = muted ? "Unmute" : "Mute";
  if (audio && audio.stream) audio.stream.getAudioTracks().forEach((t) => (t.enabled = !muted));
});
$("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text || !session || ws.readyState !== WebSocket.OPEN) return;
  await audio.context.resume(); // submitting is a user gesture: the answer can be heard
  add("bubble user", text);
  ws.send(JSON.stringify({ type: "text", text }));
  $("message").value = "";
});

setupAudio()
  .catch((error) => add("error", `audio unavailable: ${error.message}`))
  .finally(connect);
