/* The pop-up picker both "Attach" (attach.js) and "Prompts" (prompts.js) open by the
 * composer: a button toggles a panel that lists choices, a choice may open a small form with
 * Back, and Escape or Close shuts it. One helper, so the two behave the same for keyboard and
 * screen-reader users. */

import { h } from "./dom.js";

export const str = (v) => (typeof v === "string" ? v : "");

/* Wires `button` to open `panel` (drawing it with `list()`), Escape to close it; returns
 * `close`. */
export function setupPicker(button, panel, list) {
  const close = () => {
    panel.hidden = true;
    panel.textContent = "";
    button.setAttribute("aria-expanded", "false");
  };
  button.addEventListener("click", () => {
    if (!panel.hidden) return close();
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    list();
  });
  panel.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      ev.preventDefault();
      ev.stopPropagation();
      close();
      button.focus();
    }
  });
  return close;
}

/* The panel's list view: a heading, an optional note, the choices, and Close. */
export function showList(panel, title, note, items, close) {
  panel.textContent = "";
  panel.appendChild(h("h2", { text: title }));
  if (note) panel.appendChild(h("p", { class: "muted", text: note }));
  const ul = h("ul", { class: "prompt-list" });
  for (const item of items) ul.appendChild(item);
  panel.appendChild(ul);
  panel.appendChild(h("button", { type: "button", onclick: close, text: "Close" }));
  panel.querySelector("button")?.focus();
}

/* One choice of the list: a button with a bold title, a muted line and the description. */
export function choiceItem(attrs, title, muted, description, onclick) {
  return h(
    "li",
    {},
    h(
      "button",
      { type: "button", ...attrs, onclick },
      h("strong", { text: title }),
      h("span", { class: "muted", text: muted }),
      description ? h("span", { class: "desc", text: str(description) }) : null
    )
  );
}

/* The panel's form view: a heading, the description, and a form whose fields the caller
 * adds; the form ends with `submitText` and Back (to `back`). */
export function showForm(panel, title, description, submitText, back) {
  panel.textContent = "";
  panel.appendChild(h("h2", { text: title }));
  if (description) panel.appendChild(h("p", { class: "muted", text: str(description) }));
  const form = h("form", { class: "prompt-form" });
  const actions = h(
    "div",
    { class: "elicit-actions" },
    h("button", { type: "submit", class: "primary", text: submitText }),
    h("button", { type: "button", text: "Back", onclick: back })
  );
  return { form, actions };
}

/* Puts the finished form in the panel and focuses its first field (or its first button). */
export function placeForm(panel, form, inputs) {
  panel.appendChild(form);
  (inputs[0] || form.querySelector("button")).focus();
}
