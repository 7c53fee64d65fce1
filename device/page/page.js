// The live view page: the <img> shows the MJPEG stream; the state panel polls api/state once a second.
// Text only (textContent), never HTML from the device.
"use strict";

const $ = (id) => document.getElementById(id);

function text(id, value) {
  $(id).textContent = value === null || value === undefined ? "-" : String(value);
}

function renderFaces(faces) {
  const list = $("faces");
  list.replaceChildren(...faces.map((face) => {
    const item = document.createElement("li");
    item.className = "face";
    item.dataset.faceId = face.face_id;
    item.dataset.emotion = face.emotion;
    item.textContent = `#${face.face_id} ${face.emotion} ${Math.round(face.confidence * 100)}%`;
    return item;
  }));
}

function renderStats(stats) {
  const list = $("stats");
  const rows = stats ? [
    ["fps", stats.fps],
    ["ms per frame", stats.latency_ms.total],
    ["detect / classify ms", `${stats.latency_ms.detect} / ${stats.latency_ms.classify}`],
    ["faces per frame", stats.faces_per_frame],
    ["dropped frames / messages / faces",
     `${stats.dropped_frames} / ${stats.dropped_messages} / ${stats.dropped_faces}`],
    ["CPU temperature, C", stats.cpu_temp_c],
  ] : [["stats", "after the first stats interval"]];
  list.replaceChildren(...rows.flatMap(([name, value]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value === null ? "-" : String(value);
    return [dt, dd];
  }));
}

function render(state) {
  text("frame", state.frame);
  text("age", state.frame_age_s);
  text("dominant", state.dominant);
  text("count", state.faces.length);
  text("detection", state.detection === null ? "no switch" : state.detection);
  text("broker", state.broker_connected === null ? "MQTT off" : (state.broker_connected ? "connected" : "away"));
  text("viewers", state.viewers);
  renderFaces(state.faces);
  renderStats(state.stats);
}

async function refresh() {
  try {
    const response = await fetch("api/state", {cache: "no-store"});
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    text("connection", "live");
  } catch (err) {
    text("connection", `no connection (${err.message})`);
  }
  setTimeout(refresh, 1000);
}

// The stream ends when the daemon restarts or the viewer limit is reached: try again a little later.
$("live").addEventListener("error", () => {
  setTimeout(() => { $("live").src = `stream.mjpg?t=${Date.now()}`; }, 2000);
});
refresh();
