/* The hand-run form: fields generated from a tool's JSON Schema (typed inputs for scalars and
 * enums, a JSON textarea with a skeleton for the rest), run through POST /api/call-tool; the
 * result's view (js/views.js) and text in #runner-output, its pictures, sounds and resources
 * (js/media.js) below. With "Ask before tools that change data" ticked, a tool that is not
 * read-only is confirmed before it runs: web.py checks the arguments, then asks for the
 * confirmation (409 needsConfirmation), so a wrong field is named before anyone is asked. */

import { postJSON } from "./api.js";
import { $, h, plain, pretty } from "./dom.js";
import { renderContent } from "./media.js";
import { classify, rememberProducts, view } from "./views.js";

function resolveRef(schema, root, depth) {
  depth = depth || 0;
  if (!schema || typeof schema !== "object" || depth > 20) return schema || {};
  if (schema.$ref && schema.$ref.startsWith("#/")) {
    let target = root;
    for (const part of schema.$ref.slice(2).split("/")) target = target && target[part];
    return resolveRef(target || {}, root, depth + 1);
  }
  return schema;
}

/* Optional[X] arrives as anyOf [X, null]: use X and remember it may be left empty. */
function unwrap(schema, root) {
  schema = resolveRef(schema, root);
  const alts = schema.anyOf || schema.oneOf;
  if (Array.isArray(alts)) {
    const real = alts.map((a) => resolveRef(a, root)).filter((a) => a.type !== "null");
    if (real.length === 1) {
      const description = schema.description || real[0].description;
      return { ...real[0], description, default: schema.default };
    }
  }
  return schema;
}

/* An example value of the schema's shape, to edit in the JSON textarea. */
function skeleton(schema, root, depth) {
  schema = unwrap(schema, root);
  if (depth > 6) return null;
  if (schema.default !== undefined) return schema.default;
  if (schema.examples && schema.examples.length) return schema.examples[0];
  if (Array.isArray(schema.enum)) return schema.enum[0];
  switch (schema.type) {
    case "object": {
      const out = {};
      for (const [k, v] of Object.entries(schema.properties || {})) {
        out[k] = skeleton(v, root, depth + 1);
      }
      return out;
    }
    case "array":
      return [skeleton(schema.items || {}, root, depth + 1)];
    case "integer":
      return schema.minimum !== undefined ? schema.minimum : 1;
    case "number":
      return 0;
    case "boolean":
      return false;
    case "string":
      return "";
    default:
      return null;
  }
}

function field(name, schema, root, required) {
  const id = "arg-" + name.replace(/[^\w-]/g, "_");
  let input;
  let kind = schema.type;
  if (Array.isArray(schema.enum)) {
    kind = "enum";
    input = h("select", { id, name });
    if (!required) input.appendChild(h("option", { value: "" }, "(default)"));
    for (const v of schema.enum) {
      input.appendChild(h("option", { value: JSON.stringify(v) }, plain(v)));
    }
  } else if (kind === "boolean") {
    input = h("input", { id, name, type: "checkbox" });
    input.checked = schema.default === true;
  } else if (kind === "integer" || kind === "number") {
    input = h("input", { id, name, type: "number", step: kind === "integer" ? "1" : "any" });
    if (schema.default !== undefined && schema.default !== null) {
      input.value = plain(schema.default);
    }
  } else if (kind === "string") {
    input = h("input", { id, name, type: "text" });
    if (typeof schema.default === "string") input.value = schema.default;
  } else {
    kind = "json";
    input = h("textarea", { id, name, rows: 4 });
    input.value = JSON.stringify(skeleton(schema, root, 0), null, 2);
  }
  const label = h("label", { for: id }, name + (required ? " *" : ""));
  if (schema.description) {
    label.appendChild(h("span", { class: "hint", text: " — " + schema.description }));
  }
  return { name, kind, input, label, required };
}

/* The form's values as tool arguments; throws on a JSON field that does not parse. */
function readArgs(fields) {
  const args = {};
  for (const f of fields) {
    const v = f.input.value;
    if (f.kind === "boolean") {
      args[f.name] = f.input.checked;
    } else if (f.kind === "enum") {
      if (v !== "") args[f.name] = JSON.parse(v);
    } else if (f.kind === "integer" || f.kind === "number") {
      if (v !== "") args[f.name] = f.kind === "integer" ? parseInt(v, 10) : parseFloat(v);
    } else if (f.kind === "string") {
      if (v !== "" || f.required) args[f.name] = v;
    } else if (v.trim() !== "") {
      args[f.name] = JSON.parse(v);
    }
  }
  return args;
}

export function openRunner(tool) {
  const root = tool.input_schema || {};
  const props = root.properties || {};
  const required = new Set(root.required || []);
  $("runner").hidden = false;
  $("runner-title").textContent = `${tool.server} › ${tool.name}`;
  $("runner-view").dataset.server = tool.server; // whose live stock its badges show (js/live.js)
  $("runner-desc").textContent = tool.description || "";
  $("runner-output").hidden = true;
  $("runner-view").textContent = ""; // the last tool's result is not this one's
  $("runner-view").hidden = true;
  showMedia(null);
  showConfirm(null);
  const form = $("runner-form");
  form.textContent = "";
  const fields = [];
  for (const [name, raw] of Object.entries(props)) {
    const f = field(name, unwrap(raw, root), root, required.has(name));
    form.appendChild(f.label);
    form.appendChild(f.input);
    fields.push(f);
  }
  if (!fields.length) {
    form.appendChild(h("p", { class: "muted", text: "This tool takes no arguments." }));
  }
  const run = h("button", { type: "submit", class: "primary" }, "Run tool");
  form.appendChild(h("div", { class: "actions" }, run));
  const call = async (args, confirmed) => {
    run.disabled = true;
    showOutput("Running…", false);
    const approval = $("ask-approval").checked ? "ask" : "auto";
    const body = { server: tool.server, name: tool.name, args, approval, confirmed };
    try {
      const r = await postJSON("/api/call-tool", body);
      const answer = await r.json();
      if (r.status === 409 && answer.needsConfirmation) {
        $("runner-output").hidden = true;
        askFirst(tool, args, call);
      } else if (!r.ok) {
        const detail = answer.detail;
        showOutput(typeof detail === "string" ? detail : JSON.stringify(detail, null, 2), true);
      } else {
        showOutput(pretty(answer.result), answer.isError, answer.isError ? null : answer.result, tool.output_schema);
        showMedia(renderContent(answer.content, answer.result));
      }
    } catch (e) {
      showOutput("Request failed: " + e.message, true);
    } finally {
      run.disabled = false;
    }
  };
  form.onsubmit = (ev) => {
    ev.preventDefault();
    let args;
    try {
      args = readArgs(fields);
    } catch (e) {
      showOutput("Arguments are not valid JSON: " + e.message, true);
      return;
    }
    // "Ask before tools that change data" holds here too: web.py checks the arguments first
    // (422 names the field), then answers 409 needsConfirmation, and the card asks
    call(args, false);
  };
  $("runner").scrollIntoView({ block: "nearest" });
}

/* The confirmation of a tool that may change data: its arguments, Run it / Cancel. */
function askFirst(tool, args, call) {
  showConfirm(
    h(
      "div",
      { class: "confirm-card", role: "group", "aria-labelledby": "runner-confirm-text" },
      h("p", { id: "runner-confirm-text", text: `${tool.name} may change data. Run it with these arguments?` }),
      h("pre", { class: "args", text: pretty(args) }),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "primary approve", text: "Run it", onclick: () => (showConfirm(null), call(args, true)) }),
        h("button", {
          type: "button",
          class: "reject",
          text: "Cancel",
          onclick: () => (showConfirm(null), showOutput("Not run: you cancelled it.", false)),
        })
      )
    )
  );
  $("runner-confirm").querySelector("button.approve").focus();
}

function showConfirm(node) {
  const box = $("runner-confirm");
  box.textContent = "";
  if (node) box.appendChild(node);
  box.hidden = !node;
}

/* The output text, and above it a view of the result when it has one (js/views.js). */
function showOutput(text, isError, result, schema) {
  showMedia(null);
  const out = $("runner-output");
  out.hidden = false;
  out.className = isError ? "error" : "";
  out.textContent = text;
  const { kind, value } = result !== undefined && result !== null ? classify(result, schema) : { kind: null };
  if (kind) rememberProducts(kind, value); // as a card does: the names it shows are learnt
  const shown = view(kind, value);
  const box = $("runner-view");
  box.textContent = "";
  box.hidden = !shown;
  if (shown) box.appendChild(shown);
  (shown ? box : out).scrollIntoView({ block: "nearest" }); // below the fold after "Run tool"
}

/* The result's pictures, sounds and resources under the output (null: none). */
function showMedia(list) {
  const box = $("runner-media");
  box.textContent = "";
  if (list) box.appendChild(list);
  box.hidden = !list;
}
