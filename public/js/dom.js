/* Element building shared by the chat, the tool cards, the servers panel and the tool form.
 * Untrusted text only ever reaches the DOM through h()'s "text" attribute or string children,
 * i.e. as Text nodes: there is no innerHTML anywhere in the page. */

export const $ = (id) => document.getElementById(id);

/* Any value as text, never throwing: String() throws on an object whose "toString" is not a
 * function ({"toString": 1}, which a model or a server may send), and that once broke the
 * whole page. Objects and arrays show as JSON. */
export function plain(value) {
  if (typeof value === "string") return value;
  if (value === null || value === undefined || typeof value !== "object") return String(value);
  try {
    return JSON.stringify(value) ?? "";
  } catch (e) {
    return "?";
  }
}

/* h("div", { class: "x", text: "…", onclick: fn, "data-k": v }, child, "text", …) */
/* "1 order", "2 orders" (`many` when the plural is not one + "s"). */
export const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + "s"}`;

export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = plain(v);
    else if (k === "text") node.textContent = plain(v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : plain(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.appendChild(c instanceof Node ? c : document.createTextNode(plain(c)));
  }
  return node;
}

/* JSON (or a string holding JSON) indented for a <pre>; any other string as it is. */
export function pretty(value) {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") {
    try {
      return JSON.stringify(value, null, 2) ?? "";
    } catch (e) {
      return plain(value);
    }
  }
  try {
    return JSON.stringify(JSON.parse(value), null, 2);
  } catch (e) {
    return value;
  }
}
