// trtfarm dashboard: the build page follows its build live. It reads GET /v1/builds/{id}/events (server-sent
// events: state, stage, log, end) through fetch, so a 404 (an API without the events route) is seen at once and
// answered by polling GET /v1/builds/{id}/log and GET /v1/builds/{id} every 2 s. The sign-in cookie goes along.
"use strict";

// Reads a server-sent-events response (a fetch Response) to its end, calling handle(event, data) per event.
async function readEvents(res, handle) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      let event = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) handle(event, data.join("\n"));
    }
  }
}

(function () {
  const log = document.getElementById("log");
  if (!log || log.dataset.done === "true") return;
  const id = log.dataset.build;
  const mode = document.getElementById("log-mode");
  const statusEl = document.getElementById("status");
  const progressEl = document.getElementById("progress");
  const terminal = new Set(["succeeded", "failed", "cancelled"]);
  let ended = false;

  function atBottom() { return log.scrollTop + log.clientHeight >= log.scrollHeight - 4; }
  function show(info) {
    if (!info || !info.status) return;
    statusEl.textContent = info.status;
    statusEl.className = "state " + info.status;
    progressEl.textContent = info.progress || "";
    if (terminal.has(info.status)) finish();
  }
  function finish() {
    if (ended) return;
    ended = true;
    log.dataset.done = "true";
    const cancel = document.getElementById("cancel-form");
    if (cancel) cancel.remove();
    setTimeout(function () { window.location.reload(); }, 1500);  // timings, validation, engine
  }
  function append(line) {
    const follow = atBottom();
    log.textContent += line.endsWith("\n") ? line : line + "\n";
    if (follow) log.scrollTop = log.scrollHeight;
  }

  function handle(event, data) {
    let body = null;
    try { body = JSON.parse(data); } catch (e) { return; }
    if (event === "log") append(body.line || "");
    else if (event === "stage") progressEl.textContent = body.stage || "";
    else if (event === "state" || event === "end") show(body);
    if (event === "end") finish();
  }

  async function stream() {
    let res;
    try {
      res = await fetch("/v1/builds/" + id + "/events", {headers: {Accept: "text/event-stream"},
                                                         credentials: "same-origin"});
    } catch (e) { return poll(); }
    if (!res.ok || !res.body) return poll();  // 404: no events route on this API
    mode.textContent = "(live)";
    log.textContent = "";  // the stream replays the log from its start
    await readEvents(res, handle);
    if (!ended) poll();  // the stream closed early: keep following by polling
  }

  async function poll() {
    mode.textContent = "(polling every 2 s)";
    while (!ended) {
      try {
        const [text, info] = await Promise.all([
          fetch("/v1/builds/" + id + "/log", {credentials: "same-origin"}).then(function (r) { return r.ok ? r.text() : null; }),
          fetch("/v1/builds/" + id, {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : null; }),
        ]);
        if (text !== null && text !== log.textContent) {
          const follow = atBottom();
          log.textContent = text;
          if (follow) log.scrollTop = log.scrollHeight;
        }
        show(info);
      } catch (e) { /* the API restarts: try again */ }
      await new Promise(function (done) { setTimeout(done, 2000); });
    }
  }

  stream();
})();

// The Fleet page stays current: it follows GET /v1/events (the fleet's stream: `worker` events, the first one
// per worker being its current state, and `build` events for every status change) and reloads, at most every
// 3 s, when a worker's state differs from the row shown or a build changed. Without the stream: every 15 s.
(function () {
  const table = document.getElementById("workers");
  if (!table) return;
  let pending = null;
  function reloadSoon() {
    if (pending === null) pending = setTimeout(function () { window.location.reload(); }, 3000);
  }
  function shown(name) {
    const row = table.querySelector('tr.worker[data-name="' + CSS.escape(name) + '"]');
    return row ? row.dataset.state : null;
  }
  function handle(event, data) {
    let body = null;
    try { body = JSON.parse(data); } catch (e) { return; }
    if (event === "build" || event === "stage") reloadSoon();
    else if (event === "worker" && body && body.name && shown(body.name) !== body.state) reloadSoon();
  }
  async function follow() {
    let res;
    try {
      res = await fetch("/v1/events", {headers: {Accept: "text/event-stream"}, credentials: "same-origin"});
    } catch (e) { res = null; }
    if (!res || !res.ok || !res.body) { setTimeout(function () { window.location.reload(); }, 15000); return; }
    table.dataset.live = "true";
    await readEvents(res, handle);
    reloadSoon();  // the stream ended (the API restarted): start over
  }
  follow();
})();
