/* The sidebar's MCP servers panel: each server's status, target and error, and its tools as
 * buttons that open the hand-run form. Polled; redrawn only when something changed. */

import { getJSON } from "./api.js";
import { $, h } from "./dom.js";
import { openRunner } from "./toolform.js";

let toolsByServer = new Map();
let lastSignature = "";

export async function refreshServers() {
  let servers;
  try {
    servers = (await getJSON("/api/servers")).servers;
  } catch (e) {
    $("servers").textContent = "Cannot reach web.py: " + e.message;
    return;
  }
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
  } catch (e) {
    /* keep the previous list */
  }
  renderServers(servers);
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
    const status = s.status === "connected" ? `${s.tools} tools` : s.status;
    card.appendChild(
      h(
        "div",
        { class: "server-head" },
        h("span", { class: "dot " + s.status, title: s.status }),
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
