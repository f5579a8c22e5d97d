/* Attaching MCP resources to a message: an "Attach" button by the composer lists what the
 * connected servers offer (GET /api/resources; a template such as shop://products/{id} asks
 * for its parts), and each pick becomes a chip above the message box, removable with its ×.
 * chat.js sends them as `attachments` with the next message: web.py reads their text and
 * gives it to the model with that message. Hidden when no server offers resources (or an
 * older web.py has no route). */

import { getJSON } from "./api.js";
import { historyLimits } from "./config.js";
import { $, h } from "./dom.js";
import { choiceItem, placeForm, setupPicker, showForm, showList, str } from "./picker.js";

const button = $("attach-btn");
const picker = $("attach-picker");
const chips = $("attachments");
const DEFAULT_MAX = 5;
let resources = [];
let templates = [];
let attached = []; // [{server, uri, label}]

let close = () => {}; // set by setupAttach (picker.js)
const maxAttachments = () => (historyLimits() || {}).maxAttachments || DEFAULT_MAX;

/* Asks web.py again what can be attached (at start, and when the servers' tools change). */
export async function refreshResources() {
  try {
    const body = await getJSON("/api/resources");
    resources = Array.isArray(body.resources) ? body.resources : [];
    templates = Array.isArray(body.templates) ? body.templates : [];
  } catch (e) {
    resources = [];
    templates = [];
  }
  button.hidden = resources.length + templates.length === 0 && attached.length === 0;
}

/* What the next message carries: [{server, uri}]. */
export const attachments = () => attached.map(({ server, uri }) => ({ server, uri }));

/* Labels of what is attached (for the note under the user's message). */
export const attachedLabels = () => attached.map((a) => a.label);

export function clearAttachments() {
  attached = [];
  drawChips();
}

function drawChips() {
  chips.textContent = "";
  for (const a of attached) {
    chips.appendChild(
      h(
        "li",
        { class: "chip", title: `${a.server} · ${a.uri}` },
        h("span", { class: "chip-label", text: a.label }),
        h("button", {
          type: "button",
          class: "chip-remove",
          "aria-label": `Remove attachment ${a.label}`,
          text: "×",
          onclick: () => {
            attached = attached.filter((x) => x !== a);
            drawChips();
            $("input").focus();
          },
        })
      )
    );
  }
  chips.hidden = attached.length === 0;
  button.textContent = attached.length ? `Attach (${attached.length})` : "Attach";
}

function add(server, uri, label) {
  if (!attached.some((a) => a.server === server && a.uri === uri)) {
    attached.push({ server, uri, label: label || uri });
  }
  drawChips();
  close();
  $("input").focus();
}

function choice(item, onclick) {
  const uri = str(item.uri || item.uriTemplate);
  const attrs = { class: "prompt-choice attach-choice", "data-uri": uri };
  const title = str(item.title) || str(item.name) || uri;
  return choiceItem(attrs, title, ` ${str(item.server)} · ${uri}`, item.description, onclick);
}

function list() {
  const full = attached.length >= maxAttachments();
  const items = full
    ? []
    : [
        ...resources.map((r) => choice(r, () => add(r.server, r.uri, str(r.title) || str(r.name)))),
        ...templates.map((t) => choice(t, () => fillTemplate(t))),
      ];
  const note = full ? `At most ${maxAttachments()} per message.` : "";
  showList(picker, "Attach a resource", note, items, close);
}

/* A template's parts ({id} in shop://products/{id}) as fields; Attach builds the URI. */
function fillTemplate(t) {
  const template = str(t.uriTemplate);
  const names = [...new Set([...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]))];
  const title = str(t.title) || str(t.name) || template;
  const { form, actions } = showForm(picker, title, t.description, "Attach", list);
  const inputs = names.map((name) => {
    const id = `attach-arg-${name.replace(/[^\w-]/g, "_")}`;
    const field = h("input", { id, type: "text", required: true, name });
    form.appendChild(h("div", { class: "field" }, h("label", { for: id, text: name }), field));
    return field;
  });
  form.appendChild(actions);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(inputs.map((f) => [f.name, f.value.trim()]));
    const uri = template.replace(/\{([^}]+)\}/g, (_, k) => encodeURIComponent(values[k] || ""));
    // named as the listing names it: that resource if listed, else the template's title and
    // the parts filled in ("Product with live stock (id 3)", not "product 3")
    const listed = resources.find((r) => r.server === t.server && r.uri === uri);
    const parts = Object.entries(values).map(([k, v]) => `${k} ${v}`).join(", ");
    add(t.server, uri, listed ? str(listed.title) || str(listed.name) || uri : `${title} (${parts})`);
  });
  placeForm(picker, form, inputs);
}

export function setupAttach() {
  close = setupPicker(button, picker, list);
  refreshResources();
}
