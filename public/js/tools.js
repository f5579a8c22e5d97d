/* What the page knows about each server's tools (GET /api/tools, filled in by js/servers.js):
 * title, read-only flag and output schema, used to pick a result's view (js/views.js), to put
 * example prompts in the empty chat, and to name the server of a tool whose server is down.
 * Which tools each server had is remembered in localStorage, so a card can still say
 * "product-mcp is not connected" after a reload while that server is down, never
 * "unknown tool" for a tool the page has seen. */

const STORE_KEY = "product-mcp.tools.v1";
const MAX_REMEMBERED = 500;

let byKey = new Map(); // "server\u0000name" -> tool from /api/tools
let remembered = loadRemembered(); // tool name -> server name, from this and earlier visits
const listeners = [];

const key = (server, name) => `${server}\u0000${name}`;

function loadRemembered() {
  try {
    const raw = JSON.parse(localStorage.getItem(STORE_KEY) || "{}");
    return new Map(Object.entries(raw).filter(([, v]) => typeof v === "string"));
  } catch (e) {
    return new Map();
  }
}

/* The tools of every connected server, from /api/tools. */
export function setTools(tools) {
  byKey = new Map(tools.map((t) => [key(t.server, t.name), t]));
  for (const t of tools) {
    remembered.delete(t.name);
    remembered.set(t.name, t.server);
    if (t.function) remembered.set(t.function, t.server);
  }
  while (remembered.size > MAX_REMEMBERED) remembered.delete(remembered.keys().next().value);
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(Object.fromEntries(remembered)));
  } catch (e) {
    /* storage full or disabled: remembered for this visit only */
  }
  for (const fn of listeners) fn();
}

/* fn(): after each change of the tool list. */
export function onTools(fn) {
  listeners.push(fn);
}

export const allTools = () => [...byKey.values()];

/* The tool `name` of `server` as /api/tools described it, or null. */
export function toolInfo(server, name) {
  return byKey.get(key(server, name)) || null;
}

/* The server a tool (or its model-facing function name) belongs to, as far as the page has
 * seen, or null. `x__get_inventory` is looked up as `get_inventory` too. */
export function serverOfTool(name) {
  if (typeof name !== "string" || !name) return null;
  if (remembered.has(name)) return remembered.get(name);
  const cut = name.indexOf("__");
  return cut > 0 && remembered.has(name.slice(cut + 2)) ? remembered.get(name.slice(cut + 2)) : null;
}
