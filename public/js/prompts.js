/* The MCP prompts the connected servers offer (e.g. main.py's shopping_assistant), from a
 * "Prompts" button by the composer: pick one, fill in its arguments, and its text lands in the
 * message box to edit and send. Shown only when web.py lists prompts (GET /api/prompts); an
 * older web.py without the route leaves the button hidden. */

import { getJSON, postJSON } from "./api.js";
import { fillInput } from "./composer.js";
import { $, h } from "./dom.js";
import { choiceItem, placeForm, setupPicker, showForm, showList, str } from "./picker.js";

const button = $("prompts-btn");
const picker = $("prompt-picker");
let prompts = [];
let close = () => {}; // set by setupPrompts (picker.js)

/* Asks web.py for its prompts again (at start, and when the servers' tools change). */
export async function refreshPrompts() {
  try {
    const body = await getJSON("/api/prompts");
    prompts = Array.isArray(body.prompts) ? body.prompts : [];
  } catch (e) {
    prompts = []; // no route (older web.py) or not reachable: no picker
  }
  button.hidden = prompts.length === 0;
}

function list() {
  const items = prompts.map((p) => {
    const attrs = { class: "prompt-choice", "data-prompt": str(p.name) };
    const title = str(p.title) || str(p.name);
    return choiceItem(attrs, title, ` ${str(p.server)}`, p.description, () => fill(p));
  });
  showList(picker, "Start from a prompt", "", items, close);
}

/* An argument's label: its title when the server gives one, else its name in words
 * ("customerName" → "Customer name", "max_price" → "Max price"). */
export function argumentLabel(a) {
  const title = str(a.title).trim();
  if (title) return title;
  const words = str(a.name)
    .replace(/[_-]+/g, " ")
    .replace(/([a-z\d])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .trim()
    .toLowerCase();
  return words ? words[0].toUpperCase() + words.slice(1) : str(a.name);
}

/* The form of one prompt's arguments; Use puts the prompt's text into the message box. */
function fill(p) {
  const title = str(p.title) || str(p.name);
  const { form, actions } = showForm(picker, title, p.description, "Use prompt", list);
  const inputs = [];
  for (const a of Array.isArray(p.arguments) ? p.arguments : []) {
    const id = `prompt-arg-${str(a.name).replace(/[^\w-]/g, "_")}`;
    const field = h("input", { id, type: "text", required: !!a.required, name: str(a.name) });
    inputs.push(field);
    form.appendChild(
      h(
        "div",
        { class: "field" },
        h("label", { for: id, text: argumentLabel(a) + (a.required ? " *" : "") }),
        field,
        // its description, and its own name (what the server calls it) for whoever needs it
        h("span", { class: "hint", text: [str(a.description), `(${str(a.name)})`].filter(Boolean).join(" ") })
      )
    );
  }
  const problem = h("p", { class: "elicit-error", role: "alert", hidden: true });
  form.appendChild(actions);
  form.appendChild(problem);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const args = {};
    for (const f of inputs) if (f.value !== "") args[f.name] = f.value;
    try {
      const r = await postJSON("/api/prompts/get", { server: p.server, name: p.name, arguments: args });
      const body = await r.json();
      if (!r.ok) throw new Error(typeof body.detail === "string" ? body.detail : `HTTP ${r.status}`);
      const text = (body.messages || []).filter((m) => m.role === "user").map((m) => str(m.text)).join("\n\n");
      close();
      fillInput(text); // grown to fit, shown from its first line
    } catch (e) {
      problem.textContent = "Could not get the prompt: " + e.message;
      problem.hidden = false;
    }
  });
  placeForm(picker, form, inputs);
}

export function setupPrompts() {
  close = setupPicker(button, picker, list);
  refreshPrompts();
}
