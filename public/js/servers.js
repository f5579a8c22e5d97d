/* The MCP servers panel: each server's status, target and error, and its tools as buttons
 * that open the hand-run form; and the chat's banner when a server is down (from this poll,
 * and from a reply's `servers_unavailable` event). Polled; redrawn only when something
 * changed. The tool list also feeds js/tools.js (views, examples, names of down servers).
 * The same poll says whether web.py itself answers (webReachable): when it does not, the
 * banner says the chat server cannot be reached and that the page keeps trying (not that
 * "web.py is not connected" as if it were one of the MCP servers), and Send waits for it. */

import { getJSON } from "./api.js";
import { $, h, plural } from "./dom.js";
import { openRunner } from "./toolform.js";
import { setTools } from "./tools.js";

let toolsByServer = new Map();
let lastSignature = "";
let unreachable = null; // why the last poll got no answer from web.py; null while it answers
const reachListeners = [];

/* Whether web.py answered the last poll (Send waits while it does not). */
export const webReachable = () => unreachable === null;

/* fn(): called when web.py stops or starts answering. */
export function onReachable(fn) {
  reachListeners.push(fn);
}

function setUnreachable(why) {
  if (why === unreachable) return;
  unreachable = why;
  for (const fn of reachListeners) fn();
}

export async function refreshServers() {
  let servers;
  try {
    servers = (await getJSON("/api/servers")).servers;
  } catch (e) {
    lastSignature = ""; // redraw (and clear this banner) once it answers again
    setUnreachable(e.message);
    $("servers").textContent = `The chat server cannot be reached (${e.message}). Retrying…`;
    showOffline(e.message);
    return;
  }
  setUnreachable(null);
  const signature = JSON.stringify(servers.map((s) => [s.name, s.status, s.tools, s.error]));
  if (signature === lastSignature) return;
  lastSignature = signature;
  try {
    const tools = (await getJSON("/api/tools")).tools;
    toolsByServer = new Map();
    for (const t of tools) {
      if (!toolsByServer.has(t.server)) toolsByServer.set(t.server, []);
      toolsByServer.get(t.server).push(t);
    }
    setTools(tools);
  } catch (e) {
    /* keep the previous list */
  }
  renderServers(servers);
  // "connecting" is the normal first seconds of a server; anything else not connected is down
  showUnavailable(
    servers
      .filter((s) => s.status !== "connected" && s.status !== "connecting")
      .map((s) => ({ name: s.name, status: s.status, error: s.error, tools: s.knownTools || [] }))
  );
}

/* The chat's banner while web.py does not answer: the page itself keeps asking (the poll). */
function showOffline(why) {
  const banner = $("chat-banner");
  banner.textContent = "";
  banner.hidden = false;
  banner.appendChild(
    h(
      "p",
      { "data-offline": "" },
      h("strong", { text: "The chat server cannot be reached." }),
      ` Retrying every few seconds; you can send again once it is back (${why}).`
    )
  );
}

/* The chat's banner: which servers are down and what that means; hidden when none is. */
export function showUnavailable(down) {
  const banner = $("chat-banner");
  banner.textContent = "";
  banner.hidden = !down.length;
  for (const s of down) {
    const why = s.error ? ` (${s.status}: ${s.error})` : ` (${s.status})`;
    const tools = Array.isArray(s.tools) && s.tools.length ? ` ${s.tools.slice(0, 6).join(", ")}${s.tools.length > 6 ? ", …" : ""}` : "";
    banner.appendChild(
      h(
        "p",
        { "data-server": s.name },
        h("strong", { text: `${s.name} is not connected` }),
        `${why}. Its tools${tools} are unavailable until it is back; the assistant will not use them.`
      )
    );
  }
}

function renderServers(servers) {
  const box = $("servers");
  box.textContent = "";
  box.classList.remove("muted");
  if (!servers.length) {
    box.appendChild(h("p", { class: "muted", text: "No MCP servers configured (see mcp.json)." }));
  }
  for (const s of servers) {
    const tools = toolsByServer.get(s.name) || [];
    const card = h("div", { class: "server", "data-server": s.name });
    const status = s.status === "connected" ? plural(s.tools, "tool") : s.status;
    card.appendChild(
      h(
        "div",
        { class: "server-head" },
        h("span", { class: "dot " + s.status, role: "img", "aria-label": s.status, title: s.status }),
        h("span", { class: "name", text: s.name }),
        h("span", { class: "badge", text: s.transport }),
        h("span", { class: "muted status", text: status })
      )
    );
    card.appendChild(h("div", { class: "target", text: s.url || s.command || "" }));
    if (s.error) card.appendChild(h("div", { class: "err", text: s.error }));
    const list = h("ul", { class: "tool-list" });
    for (const t of tools) {
      const badge = t.read_only
        ? h("span", { class: "badge", text: "read-only" })
        : h("span", { class: "badge writes", text: "changes data" });
      const btn = h(
        "button",
        { class: "tool-btn", type: "button", "data-tool": t.name, onclick: () => openRunner(t) },
        h("strong", { text: t.name }),
        " ",
        badge,
        h("span", { class: "desc", text: t.description || "" })
      );
      list.appendChild(h("li", {}, btn));
    }
    card.appendChild(list);
    box.appendChild(card);
  }
}
