/* A server's question during a tool call (MCP elicitation, web.py's `elicitation` event): a
 * card with the server's message, its quote as a small table when it sent one (main.py's
 * create_purchase), a form built from the requested schema, and Accept / Decline / Cancel
 * posted to /api/chat/elicitation. Focus moves to the card when it appears. Once answered (or
 * closed by web.py: `elicitation_done`) the card shrinks to one line saying what happened. A
 * question web.py refused (`refused`: its form was not MCP's restricted one, or too big) is that
 * one line from the start. web.py bounds forms (chat/elicitation.py); the page still draws no
 * more than MAX_FIELDS fields of MAX_OPTIONS choices each, whatever it is sent. */

import { postJSON } from "./api.js";
import { h, plain } from "./dom.js";
import { render as markdown } from "./markdown.js";
import { money } from "./money.js";
import { rememberProducts } from "./views.js";

let nextId = 0;
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const str = (v) => (typeof v === "string" ? v : "");
const MAX_FIELDS = 50; // web.py's chat/elicitation.py refuses bigger forms
const MAX_OPTIONS = 100;
const MAX_TEXT = 2000; // characters of a title, description or label drawn
const cut = (v) => str(v).slice(0, MAX_TEXT);

/* The quote: product (its stock on a line under the name), unit price, quantity, line total;
 * then the total. Four columns fit a 320 px phone: as a fifth, the stock was cut off there. */
function quoteTable(q) {
  const items = Array.isArray(q.items) ? q.items.filter(isObj) : [];
  rememberProducts("quote", items);
  const rows = items.map((i) =>
    h(
      "tr",
      {},
      h(
        "td",
        {},
        h("span", { text: str(i.name) || `product #${i.productId}` }),
        i.available === undefined
          ? null
          : h("span", {
              class: "stock-line" + (Number(i.available) < Number(i.quantity) ? " short" : ""),
              text: `${plain(i.available)} in stock`,
            })
      ),
      h("td", { class: "num", text: money(i.unitPrice) }),
      h("td", { class: "num", text: plain(i.quantity ?? "") }),
      h("td", { class: "num", text: money(i.lineTotal) })
    )
  );
  const head = ["Product", "Price", "Qty", "Total"].map((t, n) =>
    h("th", { scope: "col", class: n ? "num" : null, text: t })
  );
  const total = h(
    "tr",
    { class: "quote-total" },
    h("th", { scope: "row", colspan: 3, text: q.inStock === false ? "Total (not all in stock)" : "Total" }),
    h("td", { class: "num", text: money(q.totalAmount) })
  );
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Quote" },
    h("table", { class: "data quote" }, h("thead", {}, h("tr", {}, ...head)), h("tbody", {}, ...rows, total))
  );
}

/* With the quote drawn from its data, the message's own Markdown of it (a table and a total,
 * written for clients that cannot draw it) would say it twice: only what comes before the
 * first table line is kept. */
function lead(text) {
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.trimStart().startsWith("|"));
  return at < 0 ? text : lines.slice(0, at).join("\n").trim();
}

/* Tables wider than the card scroll; make them reachable from the keyboard. */
export function scrollable(node) {
  for (const wrap of node.querySelectorAll(".table-wrap")) {
    wrap.setAttribute("tabindex", "0");
    wrap.setAttribute("role", "region");
    wrap.setAttribute("aria-label", "Table");
  }
}

/* Options of an enum field: [value, label] pairs (enum + enumNames, or oneOf/anyOf consts). */
function choices(s) {
  if (Array.isArray(s.enum)) {
    const names = Array.isArray(s.enumNames) ? s.enumNames : [];
    return s.enum.slice(0, MAX_OPTIONS).map((v, i) => [v, cut(names[i]) || cut(plain(v))]);
  }
  const alts = s.oneOf || s.anyOf;
  if (Array.isArray(alts)) {
    return alts
      .slice(0, MAX_OPTIONS)
      .filter((a) => isObj(a) && "const" in a)
      .map((a) => [a.const, cut(a.title) || cut(plain(a.const))]);
  }
  return null;
}

const INPUT_TYPES = { email: "email", uri: "url", date: "date", "date-time": "datetime-local" };

/* One field of the restricted form schema: { name, read(), node }. */
function field(name, s, required, prefix) {
  const id = `${prefix}-${name.replace(/[^\w-]/g, "_")}`;
  const title = cut(s.title) || name.slice(0, MAX_TEXT);
  const hint = cut(s.description);
  const label = h("label", { for: id }, title + (required ? " *" : ""));
  const help = hint ? h("span", { class: "hint", id: id + "-hint", text: hint }) : null;
  const described = help ? id + "-hint" : undefined;
  const opts = choices(s);
  if (s.type === "array") {
    const items = isObj(s.items) ? choices(s.items) || [] : [];
    const def = Array.isArray(s.default) ? s.default : [];
    const boxes = items.map(([v, text], n) => {
      const box = h("input", { type: "checkbox", id: `${id}-${n}`, value: plain(v) });
      box.checked = def.includes(v);
      return { v, box, node: h("label", { class: "check" }, box, " " + text) };
    });
    const set = h("fieldset", { "aria-describedby": described }, h("legend", { text: title + (required ? " *" : "") }), ...boxes.map((b) => b.node), help);
    return { name, node: set, read: () => boxes.filter((b) => b.box.checked).map((b) => b.v) };
  }
  let input;
  let read;
  if (opts) {
    input = h("select", { id, name, required, "aria-describedby": described });
    if (!required) input.appendChild(h("option", { value: "" }, "(none)"));
    opts.forEach(([v, text], n) => input.appendChild(h("option", { value: String(n) }, text)));
    const def = opts.findIndex(([v]) => v === s.default);
    if (def >= 0) input.value = String(def);
    read = () => (input.value === "" ? undefined : opts[Number(input.value)][0]);
  } else if (s.type === "boolean") {
    input = h("input", { id, name, type: "checkbox", "aria-describedby": described });
    input.checked = s.default === true;
    read = () => input.checked;
  } else if (s.type === "number" || s.type === "integer") {
    input = h("input", {
      id, name, type: "number", required, min: s.minimum, max: s.maximum,
      step: s.type === "integer" ? "1" : "any", "aria-describedby": described,
    });
    if (typeof s.default === "number") input.value = String(s.default);
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else {
    input = h("input", {
      id, name, type: INPUT_TYPES[s.format] || "text", required,
      minlength: s.minLength, maxlength: s.maxLength, "aria-describedby": described,
    });
    if (typeof s.default === "string") input.value = s.default;
    read = () => (input.value === "" ? undefined : input.value);
  }
  const node = s.type === "boolean"
    ? h("div", { class: "field check" }, h("label", { for: id }, input, " " + title), help)
    : h("div", { class: "field" }, label, input, help);
  return { name, node, read };
}

const OUTCOME = {
  accept: "You accepted",
  decline: "You declined",
  cancel: "Cancelled",
};

/* The card for an elicitation item; `changed()` redraws it. */
export function elicitationCard(item, changed) {
  const e = item.request || {};
  const closed = item.action || item.closedReason;
  const head = h(
    "div",
    { class: "elicit-head" },
    h("span", { class: "badge", text: "question" }),
    h("span", { class: "srv", text: str(e.server) || "?" }),
    e.tool ? h("span", { class: "sep", "aria-hidden": "true", text: "›" }) : null,
    e.tool ? h("span", { class: "name", text: str(e.tool) }) : null
  );
  if (typeof e.refused === "string") {
    return h(
      "div",
      { class: "elicit-card closed cancel refused" },
      head,
      h("p", { class: "elicit-outcome", text: `The server's question was refused: ${cut(e.refused)}` })
    );
  }
  if (closed) {
    const why = item.closedReason && item.closedReason !== "answered" ? ` (${item.closedReason})` : "";
    const what = OUTCOME[item.action] || "Closed";
    const first = str(e.message).split("\n").find((l) => l.trim() && !l.includes("|")) || "";
    return h(
      "div",
      { class: "elicit-card closed " + (item.action || "cancel") },
      head,
      h("p", { class: "elicit-outcome", text: `${what}${why}: ${first.replace(/[*_`#>]/g, "").trim()}` })
    );
  }
  const prefix = `elicit-${++nextId}`;
  const card = h("div", {
    class: "elicit-card",
    role: "group",
    "aria-labelledby": prefix + "-msg",
    tabindex: "-1",
    "data-elicitation": str(e.elicitationId),
  });
  card.appendChild(head);
  // the message is Markdown (main.py's quote comes as a table in it)
  const message = h("div", { class: "elicit-message", id: prefix + "-msg" });
  const text = isObj(e.quote) ? lead(str(e.message)) : str(e.message);
  message.appendChild(markdown(text || "The server asks for your answer."));
  scrollable(message);
  card.appendChild(message);
  if (isObj(e.quote)) card.appendChild(quoteTable(e.quote));
  const schema = isObj(e.requestedSchema) ? e.requestedSchema : {};
  const props = isObj(schema.properties) ? schema.properties : {};
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  const fields = Object.entries(props)
    .filter(([, s]) => isObj(s))
    .slice(0, MAX_FIELDS)
    .map(([n, s]) => field(n, s, required.has(n), prefix));
  const form = h("form", { class: "elicit-form", novalidate: true });
  for (const f of fields) form.appendChild(f.node);
  if (e.mode === "url" && /^https?:\/\//i.test(str(e.url))) {
    form.appendChild(
      h("p", {}, "Open ", h("a", { href: e.url, target: "_blank", rel: "noopener noreferrer", text: e.url }), ", then accept.")
    );
  }
  const problem = h("p", { class: "elicit-error", role: "alert", hidden: true });
  const send = async (action) => {
    const body = { elicitationId: e.elicitationId, action };
    if (action === "accept") {
      if (!form.checkValidity()) {
        form.reportValidity();
        return;
      }
      body.content = {};
      for (const f of fields) {
        const v = f.read();
        if (v !== undefined) body.content[f.name] = v;
      }
    }
    for (const b of buttons) b.disabled = true;
    item.answering = action; // sent, maybe heard: a reload now cannot say nothing was done
    try {
      const r = await postJSON("/api/chat/elicitation", body);
      if (r.ok) {
        item.action = action;
        changed(item);
        return;
      }
      item.answering = null; // refused: not acted on
      const err = await r.json().catch(() => ({}));
      problem.textContent = typeof err.detail === "string" ? err.detail : `HTTP ${r.status}`;
      problem.hidden = false;
      if (r.status === 404) {
        item.closedReason = "expired";
        changed(item);
      }
    } catch (err) {
      problem.textContent = "Could not send your answer: " + err.message;
      problem.hidden = false;
    }
    for (const b of buttons) b.disabled = false;
  };
  // how Decline and Cancel differ: a line under the buttons, each half its button's description
  const say = {
    decline: isObj(e.quote) ? "Decline: don't buy; tell the assistant no." : "Decline: say no; the assistant is told.",
    cancel: "Cancel: dismiss without answering.",
  };
  const choice = (action) => ({ "aria-describedby": `${prefix}-${action}`, onclick: () => send(action) });
  const buttons = [
    h("button", { type: "submit", class: "primary accept", text: fields.length ? "Accept" : "Confirm" }),
    h("button", { type: "button", class: "decline", text: "Decline", ...choice("decline") }),
    h("button", { type: "button", class: "cancel", text: "Cancel", ...choice("cancel") }),
  ];
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    send("accept");
  });
  form.appendChild(h("div", { class: "elicit-actions" }, ...buttons));
  const hint = (action) => h("span", { id: `${prefix}-${action}`, text: say[action] });
  form.appendChild(h("p", { class: "hint elicit-choices" }, hint("decline"), " ", hint("cancel")));
  form.appendChild(problem);
  card.appendChild(form);
  return card;
}

/* Where focus goes when the card appears: its first field, else its Accept button. */
export function focusCard(card) {
  const target = card.querySelector("input, select, textarea") || card.querySelector("button.accept") || card;
  target.focus();
}
