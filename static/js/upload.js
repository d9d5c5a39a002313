/* Upload page: pick or drop photos, check them like the server does, build the generator's
   settings form from its declaration, upload with per-file progress, go to the batch page. */
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const form = document.getElementById("upload-form");
  const input = document.getElementById("file-input");
  const dropzone = document.getElementById("dropzone");
  const list = document.getElementById("file-list");
  const summary = document.getElementById("file-summary");
  const generatorSelect = document.getElementById("generator");
  const description = document.getElementById("generator-description");
  const paramsBox = document.getElementById("params");
  const submit = document.getElementById("submit");
  const statusLine = document.getElementById("upload-status");
  const errorBox = document.getElementById("upload-error");
  let entries = []; // {file, url, problem, row, bar}

  const formatSize = (bytes) =>
    bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(bytes / 1024)) + " KB";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => node.setAttribute(key, value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function problemOf(file) {
    if (!config.accepted_types.includes(file.type)) return "not a JPEG, PNG or WebP image";
    if (file.size === 0) return "file is empty";
    if (file.size > config.max_file_size) return "larger than " + formatSize(config.max_file_size);
    try {
      const bitmap = await createImageBitmap(file);
      const pixels = bitmap.width * bitmap.height;
      bitmap.close();
      if (pixels > config.max_pixels) return "too many pixels (" + Math.round(pixels / 1e6) + " MP)";
    } catch (error) {
      return "the browser cannot read this image";
    }
    return null;
  }

  async function addFiles(files) {
    for (const file of files) {
      if (entries.length >= config.max_files) {
        showError("At most " + config.max_files + " photos per batch.");
        break;
      }
      const entry = { file, url: URL.createObjectURL(file), problem: await problemOf(file) };
      entries.push(entry);
    }
    render();
  }

  function render() {
    list.replaceChildren();
    entries.forEach((entry, index) => {
      const row = el("li", { class: "file-card" + (entry.problem ? " invalid" : "") });
      const img = entry.problem
        ? el("div", { class: "thumb placeholder", "aria-hidden": "true" }, "!")
        : el("img", { src: entry.url, alt: "", class: "thumb" });
      const name = el("span", { class: "file-name" }, entry.file.name);
      const size = el("span", { class: "hint" }, formatSize(entry.file.size));
      const bar = el("progress", { max: "100", value: "0", "aria-label": "Upload of " + entry.file.name });
      const remove = el("button", { type: "button", class: "icon-button", "aria-label": "Remove " + entry.file.name }, "✕");
      remove.addEventListener("click", () => {
        URL.revokeObjectURL(entry.url);
        entries.splice(index, 1);
        render();
      });
      row.append(img, name, size, bar, remove);
      if (entry.problem) row.append(el("span", { class: "error small" }, entry.problem));
      entry.row = row;
      entry.bar = bar;
      list.append(row);
    });
    const bad = entries.filter((e) => e.problem).length;
    summary.textContent = entries.length
      ? entries.length + " photo(s) selected" + (bad ? ", " + bad + " cannot be used — remove them to continue" : "")
      : "No photos selected yet.";
    submit.disabled = entries.length === 0 || bad > 0;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  // --- generator settings, from the same declaration the API validates against -------------
  function currentGenerator() {
    return config.generators.find((g) => g.id === generatorSelect.value);
  }

  function fieldFor(param) {
    const id = "param-" + param.name;
    const wrapper = el("div", { class: "field" });
    const label = el("label", { for: id }, param.description || param.name);
    let control;
    if (param.type === "boolean") {
      control = el("input", { type: "checkbox", id, name: param.name });
      control.checked = Boolean(param.default);
      wrapper.classList.add("checkbox");
      wrapper.append(control, label);
      return wrapper;
    }
    if (param.choices) {
      control = el("select", { id, name: param.name });
      param.choices.forEach((choice) => {
        const option = el("option", { value: String(choice) }, String(choice));
        if (choice === param.default) option.selected = true;
        control.append(option);
      });
    } else {
      control = el("input", {
        id, name: param.name, type: param.type === "string" ? "text" : "number",
        step: param.type === "integer" ? "1" : "any",
      });
      if (param.minimum !== undefined) control.min = param.minimum;
      if (param.maximum !== undefined) control.max = param.maximum;
      if (param.default !== null && param.default !== undefined) control.value = param.default;
      else control.placeholder = "automatic";
    }
    wrapper.append(label, control);
    if (param.name === "face_limit") wrapper.append(presetsFor(control, param));
    return wrapper;
  }

  function presetsFor(control, param) {
    const group = el("div", { class: "presets", role: "group", "aria-label": "Face limit presets" });
    config.face_limit_presets.forEach(([label, value]) => {
      if (value && param.maximum !== undefined && value > param.maximum) return;
      const button = el("button", { type: "button", class: "chip" }, label);
      button.addEventListener("click", () => {
        control.value = value === "" ? (param.default ?? "") : value;
      });
      group.append(button);
    });
    return group;
  }

  function renderParams() {
    const generator = currentGenerator();
    paramsBox.replaceChildren(el("legend", {}, "Settings"));
    description.textContent = generator ? generator.description : "";
    (generator ? generator.parameters : []).forEach((param) => paramsBox.append(fieldFor(param)));
  }

  function paramValues() {
    const values = {};
    currentGenerator().parameters.forEach((param) => {
      const control = document.getElementById("param-" + param.name);
      if (param.type === "boolean") values[param.name] = control.checked;
      else if (control.value === "") return;
      else if (param.type === "integer") values[param.name] = parseInt(control.value, 10);
      else if (param.type === "number") values[param.name] = parseFloat(control.value);
      else values[param.name] = control.value;
    });
    return values;
  }

  // --- upload ---------------------------------------------------------------------------------
  function csrfToken() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function upload(event) {
    event.preventDefault();
    showError("");
    const data = new FormData();
    entries.forEach((entry) => data.append("files", entry.file, entry.file.name));
    data.append("model", generatorSelect.value);
    data.append("params", JSON.stringify(paramValues()));
    const request = new XMLHttpRequest();
    request.open("POST", config.upload_url);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    // The files travel in order inside one request, so each file's share of the bytes sent
    // gives its own progress.
    const total = entries.reduce((sum, entry) => sum + entry.file.size, 0) || 1;
    request.upload.addEventListener("progress", (progress) => {
      let offset = 0;
      const sent = progress.loaded * (total / (progress.total || total));
      entries.forEach((entry) => {
        const share = Math.min(1, Math.max(0, (sent - offset) / (entry.file.size || 1)));
        entry.bar.value = Math.round(share * 100);
        offset += entry.file.size;
      });
      statusLine.textContent = "Uploading… " + Math.round((progress.loaded / (progress.total || 1)) * 100) + "%";
    });
    request.addEventListener("load", () => finished(request));
    request.addEventListener("error", () => failed("The upload did not reach the server. Check the connection and try again."));
    submit.disabled = true;
    statusLine.textContent = "Uploading…";
    request.send(data);
  }

  function finished(request) {
    let body = {};
    try { body = JSON.parse(request.responseText); } catch (error) { /* not JSON */ }
    if (request.status === 200) {
      statusLine.textContent = "Uploaded. Opening the batch…";
      entries.forEach((entry) => { entry.bar.value = 100; });
      window.location.assign(config.batch_url.replace("00000000-0000-0000-0000-000000000000", body.batch_id));
      return;
    }
    const perFile = (body.details && body.details.errors) || [];
    perFile.forEach((problem) => {
      const entry = entries.find((e) => e.file.name === problem.filename);
      if (entry) entry.problem = problem.error;
    });
    if (perFile.length) render();
    failed(body.message || "The server refused the upload (HTTP " + request.status + ").");
  }

  function failed(message) {
    statusLine.textContent = "";
    showError(message);
    submit.disabled = entries.length === 0;
  }

  // --- wiring -----------------------------------------------------------------------------------
  input.addEventListener("change", () => { addFiles(Array.from(input.files)); input.value = ""; });
  ["dragenter", "dragover"].forEach((name) => dropzone.addEventListener(name, (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((name) => dropzone.addEventListener(name, () => dropzone.classList.remove("dragging")));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    addFiles(Array.from(event.dataTransfer.files));
  });
  dropzone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  generatorSelect.addEventListener("change", renderParams);
  form.addEventListener("submit", upload);
  renderParams();
  render();
})();
