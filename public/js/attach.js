/* Attaching MCP resources to a message: an "Attach" button by the composer lists what the
 * connected servers offer (GET /api/resources; a template such as shop://products/{id} asks
 * for its parts), and each pick becomes a chip above the message box, removable with its ×.
 * chat.js sends them as `attachments` with the next message: web.py reads their text and
 * gives it to the model with that message. Hidden when no server offers resources (or an
 * older web.py has no route). */

import { getJSON } from "./api.js";
import { historyLimits } from "./config.js";
import { $, h } from "./dom.js";

const button = $("attach-btn");
const picker = $("attach-picker");
const chips = $("attachments");
const DEFAULT_MAX = 5;
let resources = [];
let templates = [];
let attached = []; // [{server, uri, label}]

const str = (v) => (typeof v === "string" ? v : "");
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

function close() {
  picker.hidden = true;
  picker.textContent = "";
  button.setAttribute("aria-expanded", "false");
}

function choice(item, onclick) {
  return h(
    "li",
    {},
    h(
      "button",
      { type: "button", class: "prompt-choice attach-choice", "data-uri": str(item.uri || item.uriTemplate), onclick },
      h("strong", { text: str(item.title) || str(item.name) || str(item.uri || item.uriTemplate) }),
      h("span", { class: "muted", text: ` ${str(item.server)} · ${str(item.uri || item.uriTemplate)}` }),
      item.description ? h("span", { class: "desc", text: str(item.description) }) : null
    )
  );
}

function list() {
  picker.textContent = "";
  picker.appendChild(h("h2", { text: "Attach a resource" }));
  const full = attached.length >= maxAttachments();
  if (full) picker.appendChild(h("p", { class: "muted", text: `At most ${maxAttachments()} per message.` }));
  const ul = h("ul", { class: "prompt-list" });
  if (!full) {
    for (const r of resources) ul.appendChild(choice(r, () => add(r.server, r.uri, str(r.title) || str(r.name))));
    for (const t of templates) ul.appendChild(choice(t, () => fillTemplate(t)));
  }
  picker.appendChild(ul);
  picker.appendChild(h("button", { type: "button", onclick: close, text: "Close" }));
  picker.querySelector("button")?.focus();
}

/* A template's parts ({id} in shop://products/{id}) as fields; Attach builds the URI. */
function fillTemplate(t) {
  const template = str(t.uriTemplate);
  const names = [...new Set([...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]))];
  picker.textContent = "";
  picker.appendChild(h("h2", { text: str(t.title) || str(t.name) || template }));
  if (t.description) picker.appendChild(h("p", { class: "muted", text: str(t.description) }));
  const form = h("form", { class: "prompt-form" });
  const inputs = names.map((name) => {
    const id = `attach-arg-${name.replace(/[^\w-]/g, "_")}`;
    const field = h("input", { id, type: "text", required: true, name });
    form.appendChild(h("div", { class: "field" }, h("label", { for: id, text: name }), field));
    return field;
  });
  form.appendChild(
    h(
      "div",
      { class: "elicit-actions" },
      h("button", { type: "submit", class: "primary", text: "Attach" }),
      h("button", { type: "button", text: "Back", onclick: list })
    )
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(inputs.map((f) => [f.name, f.value.trim()]));
    const uri = template.replace(/\{([^}]+)\}/g, (_, k) => encodeURIComponent(values[k] || ""));
    add(t.server, uri, `${str(t.name) || template} ${Object.values(values).join(", ")}`.trim());
  });
  picker.appendChild(form);
  (inputs[0] || form.querySelector("button")).focus();
}

export function setupAttach() {
  button.addEventListener("click", () => {
    if (!picker.hidden) return close();
    picker.hidden = false;
    button.setAttribute("aria-expanded", "true");
    list();
  });
  picker.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      ev.preventDefault();
      ev.stopPropagation();
      close();
      button.focus();
    }
  });
  refreshResources();
}
