/* Batch page: live per-file progress over the WebSocket stream. After a reload or a lost
   connection it resumes from the last event it saw, so nothing is missed or shown twice. */
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const overall = document.getElementById("overall");
  const overallText = document.getElementById("overall-text");
  const statusLine = document.getElementById("batch-status");
  const connection = document.getElementById("connection");
  let lastId = "";
  let finished = statusLine.dataset.status && !["queued", "processing"].includes(statusLine.dataset.status);
  let retryDelay = 1000;

  function row(jobId) {
    return document.querySelector('.job-row[data-job-id="' + jobId + '"]');
  }

  function field(node, name) {
    return node.querySelector('[data-field="' + name + '"]');
  }

  function onFileUpdate(data) {
    const node = row(data.job_id);
    if (!node) return;
    node.dataset.status = data.status;
    const badge = field(node, "status");
    badge.textContent = data.status;
    badge.className = "badge status-" + data.status;
    field(node, "progress").value = data.progress || 0;
    let stage = data.message || data.stage;
    if (data.queue_position !== null && data.queue_position !== undefined) {
      stage += " · position " + data.queue_position + " in queue";
    }
    field(node, "stage").textContent = stage;
    const error = field(node, "error");
    error.textContent = data.error || "";
    error.hidden = !data.error;
    field(node, "view").hidden = data.status !== "completed";
  }

  function onProgress(data) {
    overall.value = data.progress;
    overallText.textContent = data.progress + "%";
    if (!finished) statusLine.textContent = data.message + "…";
  }

  function onEnd(data) {
    finished = true;
    const result = data.result || {};
    overall.value = 100;
    overallText.textContent = "100%";
    statusLine.textContent = "Finished: " + (result.successful_files || 0) + " ready, " +
      (result.failed_files || 0) + " failed" + (result.cancelled_files ? ", " + result.cancelled_files + " canceled" : "") + ".";
    document.getElementById("download-all").hidden = !result.successful_files;
    document.getElementById("cancel-form").hidden = true;
    document.getElementById("retry-form").hidden = !(result.failed_files || result.cancelled_files);
  }

  const handlers = { file_update: onFileUpdate, task_progress: onProgress, task_completed: onEnd, task_failed: onEnd };

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    let url = scheme + window.location.host + config.websocket_path + "?token=" + encodeURIComponent(config.stream_token);
    if (lastId) url += "&last_event_id=" + encodeURIComponent(lastId);
    const socket = new WebSocket(url);
    socket.addEventListener("open", () => { connection.textContent = ""; retryDelay = 1000; });
    socket.addEventListener("message", (message) => {
      const event = JSON.parse(message.data);
      if (event.id) lastId = event.id;
      const handler = handlers[event.event];
      if (handler) handler(event.data);
    });
    socket.addEventListener("close", () => {
      if (finished) return;
      connection.textContent = "Connection lost — reconnecting…";
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    });
  }

  connect();
})();
