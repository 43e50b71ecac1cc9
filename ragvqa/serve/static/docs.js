// ragvqa serve: the API reference, rendered from /openapi.json in the page (FastAPI's own docs
// page loads Swagger UI from a CDN, which an offline machine cannot reach).
"use strict";

const node = (tag, text = "", className = "") => {
  const e = document.createElement(tag);
  if (text) e.textContent = text;
  if (className) e.className = className;
  return e;
};

function resolve(spec, schema) {
  if (schema && schema.$ref) return spec.components.schemas[schema.$ref.split("/").pop()];
  return schema || {};
}

function typeOf(spec, schema) {
  schema = resolve(spec, schema);
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(spec, s)).join(" | ");
  if (schema.type === "array") return `list of ${typeOf(spec, schema.items)}`;
  if (schema.title && schema.properties) return schema.title;
  return schema.format ? `${schema.type} (${schema.format})` : schema.type || "any";
}

function fields(spec, schema) {
  schema = resolve(spec, schema);
  if (schema.type === "array") schema = resolve(spec, schema.items);
  const table = node("table");
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const row = node("tr");
    row.append(node("td", name + (required.has(name) ? " *" : "")), node("td", typeOf(spec, prop)),
      node("td", prop.description || resolve(spec, prop).description || "", "muted"));
    table.append(row);
  }
  return table;
}

function route(spec, path, method, op) {
  const box = node("div", "", "route");
  box.append(node("h3", `${method.toUpperCase()} ${path}`));
  if (op.description || op.summary) box.append(node("p", op.description || op.summary));
  const params = op.parameters || [];
  if (params.length) {
    box.append(node("h4", "Parameters"));
    const table = node("table");
    for (const p of params) {
      const row = node("tr");
      row.append(node("td", p.name + (p.required ? " *" : "")), node("td", p.in),
        node("td", typeOf(spec, p.schema)));
      table.append(row);
    }
    box.append(table);
  }
  for (const [kind, body] of Object.entries((op.requestBody || {}).content || {})) {
    box.append(node("h4", `Body (${kind}): ${typeOf(spec, body.schema)}`), fields(spec, body.schema));
  }
  const codes = Object.entries(op.responses || {}).map(([c, r]) => `${c} ${r.description || ""}`);
  box.append(node("p", `Responses: ${codes.join(" · ")}`, "muted"));
  return box;
}

async function start() {
  const spec = await (await fetch("/openapi.json")).json();
  document.getElementById("intro").textContent =
    `${spec.info.title} ${spec.info.version}: ${spec.info.summary || ""} ` +
    'Errors are {"error": "<one line>"} with a 4xx status.';
  const routes = document.getElementById("routes");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) routes.append(route(spec, path, method, op));
  }
  document.body.dataset.ready = "1";
}

start();
