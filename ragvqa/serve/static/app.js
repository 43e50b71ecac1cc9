// ragvqa serve: the page's script. Plain JavaScript, no build step, nothing loaded from
// elsewhere. Data from the server is put into the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, pipeline: null, last: null, base: null, original: "" };

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function say(id, text, isError = false) {
  $(id).textContent = text;
  $(id).classList.toggle("error", isError);
}

async function call(method, url, body) {
  const options = { method };
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  const started = performance.now();
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return { data, response, ms: performance.now() - started };
}

// -- the pipeline and its templates ----------------------------------------------------------
function fillTemplates(select, chosen) {
  select.replaceChildren();
  for (const t of state.pipeline.templates.filter((t) => t.answer)) {
    const label = `${t.ref}${t.locked ? "" : " (not locked)"}`;
    select.append(el("option", { value: t.ref, textContent: label, title: t.description }));
  }
  select.value = chosen;
}

async function loadPipeline(chosen) {
  const { data } = await call("GET", "/v1/pipeline");
  state.pipeline = data;
  const name = data.config.name || data.name;
  $("pipeline-name").textContent = `${name} · ${data.template.ref} · top-k ${data.top_k}`;
  if (data.config.notice) {
    $("notice").textContent = data.config.notice;
    $("notice").hidden = false;
  }
  fillTemplates($("template"), $("template").value || data.template.ref);
  fillTemplates($("pg-template"), chosen || $("pg-template").value || data.template.ref);
  $("top-k").placeholder = data.top_k;
  $("top-k").max = data.max_top_k;
  $("pg-save").disabled = !data.can_save;
  $("pg-save").title = data.can_save
    ? `writes a new version into ${data.prompts_folder}`
    : "start the server with --prompts DIR to save templates";
}

async function loadTemplate(ref) {
  const { data } = await call("GET", `/v1/templates/${encodeURI(ref)}`);
  state.base = data.ref;
  state.original = data.text;
  $("pg-text").value = data.text;
}

// -- asking ----------------------------------------------------------------------------------
function setImage(file) {
  if (!file) return;
  state.file = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  say("status", `image: ${file.name} (${Math.round(file.size / 1024)} KB)`);
}

function setupDrop() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    setImage(e.dataTransfer.files[0]);
  });
  $("image").addEventListener("change", () => setImage($("image").files[0]));
}

async function ask(event) {
  event.preventDefault();
  const form = new FormData();
  if (state.file) form.append("image", state.file, state.file.name);
  form.append("question", $("question").value);
  form.append("template", $("template").value);
  if ($("top-k").value) form.append("top_k", $("top-k").value);
  $("ask-button").disabled = true;
  say("status", "answering…");
  try {
    const { data, response, ms } = await call("POST", "/v1/answer", form);
    state.last = data;
    showAnswer(data, response, ms);
    $("pg-results").replaceChildren(card(data, "asked", false));
    say("status", "");
  } catch (error) {
    say("status", error.message, true);
  } finally {
    $("ask-button").disabled = false;
  }
}

function showAnswer(record, response, ms) {
  $("result").hidden = false;
  $("answer-text").textContent = record.answer || "(no answer)";
  $("answer-meta").textContent = `${record.model} · ${record.template} · ${record.query_id}`;
  const read = new Set(record.evidence);
  $("evidence").replaceChildren(
    ...record.retrieved.filter((r) => read.has(r.passage_id)).map((r) => evidenceItem(record, r)),
  );
  $("candidates").tBodies[0].replaceChildren(
    ...record.retrieved.filter((r) => !read.has(r.passage_id)).map((r) =>
      el("tr", {}, [
        el("td", { textContent: r.rank + 1 }),
        el("td", { textContent: r.title }),
        el("td", { textContent: r.section || "(lead)" }),
        el("td", { className: "num", textContent: r.score.toFixed(3) }),
      ]),
    ),
  );
  const rows = Object.entries(record.timings).map(([k, v]) => [k, `${(v * 1000).toFixed(1)} ms`]);
  rows.push(["queue", `${response.headers.get("X-Ragvqa-Queue-Ms")} ms`]);
  rows.push(["batch", `${response.headers.get("X-Ragvqa-Batch")} question(s) in one call`]);
  rows.push(["round trip", `${ms.toFixed(0)} ms`]);
  $("timings").tBodies[0].replaceChildren(
    ...rows.map(([k, v]) => el("tr", {}, [el("th", { textContent: k }), el("td", { textContent: v })])),
  );
}

function evidenceItem(record, r) {
  const img = el("img", { alt: r.title, src: `/v1/queries/${record.query_id}/thumbnails/${r.rank}` });
  img.addEventListener("error", () => img.remove());
  const head = el("div", { className: "head" }, [
    img,
    el("div", {}, [
      el("strong", { textContent: r.title }),
      el("div", { className: "muted", textContent: `${r.section || "(lead)"} · score ${r.score.toFixed(3)}` }),
      el("p", { className: "text", textContent: r.text.slice(0, 300) }),
    ]),
  ]);
  return el("li", { className: "evidence-item" }, [head]);
}

// -- the playground --------------------------------------------------------------------------
function card(record, how, draft) {
  const prompt = record.prompt.map((m) => `[${m.role}]\n${m.text}`).join("\n\n");
  return el("div", { className: draft ? "card draft" : "card" }, [
    el("div", { className: "label", textContent: how }),
    el("div", { className: "muted", textContent: record.template }),
    el("div", { className: "answer", textContent: record.answer || "(no answer)" }),
    el("div", { className: "muted", textContent: `raw: ${JSON.stringify(record.raw_output)}` }),
    el("details", {}, [el("summary", { textContent: "prompt" }), el("pre", { textContent: prompt })]),
  ]);
}

async function reanswer() {
  if (!state.last) return say("pg-status", "ask a question first", true);
  const text = $("pg-text").value;
  const draft = text !== state.original;
  const body = draft
    ? { query_id: state.last.query_id, text, base: state.base }
    : { query_id: state.last.query_id, template: state.base };
  $("pg-run").disabled = true;
  say("pg-status", "re-answering on the cached retrieval…");
  try {
    const { data } = await call("POST", "/v1/reread", body);
    const how = draft ? `draft edited from ${state.base}` : "re-answered";
    $("pg-results").append(card(data, how, draft));
    say("pg-status", "");
  } catch (error) {
    say("pg-status", error.message, true);
  } finally {
    $("pg-run").disabled = false;
  }
}

async function save() {
  const body = { base: state.base, text: $("pg-text").value, changelog: $("pg-note").value };
  try {
    const { data } = await call("POST", "/v1/templates", body);
    await loadPipeline(data.ref);
    await loadTemplate(data.ref);
    $("pg-note").value = "";
    say("pg-status", `saved as ${data.ref}`);
  } catch (error) {
    say("pg-status", error.message, true);
  }
}

async function start() {
  setupDrop();
  $("ask-form").addEventListener("submit", ask);
  $("pg-template").addEventListener("change", () =>
    loadTemplate($("pg-template").value).catch((e) => say("pg-status", e.message, true)));
  $("pg-run").addEventListener("click", reanswer);
  $("pg-reset").addEventListener("click", () => { $("pg-text").value = state.original; });
  $("pg-save").addEventListener("click", save);
  try {
    await loadPipeline();
    await loadTemplate($("pg-template").value);
    document.body.dataset.ready = "1";
  } catch (error) {
    say("status", `cannot read the pipeline: ${error.message}`, true);
  }
}

start();
