/* The chat page: streams replies from /api/chat/stream, shows tool calls as cards (with
 * Approve / Reject for tools that change data), lists servers and tools, and runs any tool by
 * hand from a form generated from its input schema.
 *
 * Untrusted text (model replies, tool results, tool descriptions, server errors) only ever
 * reaches the DOM as Text nodes, via textContent or SafeMarkdown. No innerHTML anywhere.
 */
(function () {
  "use strict";

  const STORE_KEY = "product-mcp.chat.v1";
  const $ = (id) => document.getElementById(id);
  const messagesEl = $("messages");
  const inputEl = $("input");
  const sendBtn = $("send");
  const askBox = $("ask-approval");

  /* history: OpenAI-format messages sent back to the server each turn.
   * items: what the page shows (user/assistant/tool/error), enough to redraw after reload. */
  let state = { history: [], items: [] };
  let streaming = null; // AbortController while a reply streams

  /* What the server accepts in one request (GET /api/config historyLimits; same defaults as
   * chat.py). The page sends only the most recent whole turns that fit, so a long conversation
   * or one huge reply never makes every later send fail. */
  let limits = {
    maxBodyBytes: 4 * 1024 * 1024,
    maxMessageChars: 20000,
    maxMessages: 1000,
    maxChars: 1000000,
    maxContentChars: 200000,
    maxToolCalls: 64,
    maxArgumentsChars: 100000,
    maxNameChars: 128,
    maxIdChars: 200,
  };

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function pretty(value) {
    if (value === undefined || value === null) return "";
    if (typeof value !== "string") return JSON.stringify(value, null, 2);
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch (e) {
      return value;
    }
  }

  /* ------------------------------------------------------------ persistence */

  function save() {
    const items = state.items.map(({ node, live, approvalId, ...rest }) => rest);
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify({ history: state.history, items }));
    } catch (e) {
      /* storage full or disabled: the chat still works */
    }
  }

  function load() {
    try {
      const raw = localStorage.getItem(STORE_KEY);
      if (!raw) return;
      const data = JSON.parse(raw);
      if (!Array.isArray(data.history) || !Array.isArray(data.items)) return;
      for (const item of data.items) {
        if (item.kind === "tool" && (item.status === "approval" || item.status === "running")) {
          item.status = "error";
          item.error = item.error || "interrupted";
        }
      }
      state = data;
    } catch (e) {
      localStorage.removeItem(STORE_KEY);
    }
  }

  /* ------------------------------------------------------------ rendering */

  function scrollDown() {
    messagesEl.scrollTop = messagesEl.scrollHeight;
  }

  function renderItem(item) {
    let node;
    if (item.kind === "user") {
      node = h("div", { class: "msg user", text: item.text });
    } else if (item.kind === "assistant") {
      node = h("div", { class: "msg assistant" + (item.live ? " streaming" : "") });
      node.appendChild(window.SafeMarkdown.render(item.text));
    } else if (item.kind === "tool") {
      node = renderToolCard(item);
    } else {
      node = h("div", { class: "msg error", text: item.text });
    }
    item.node = node;
    return node;
  }

  function toolState(item) {
    if (item.status === "approval") return "waiting for your approval";
    if (item.status === "running") return "running…";
    if (item.status === "rejected") return "rejected";
    const ms = item.durationMs !== undefined ? ` · ${item.durationMs} ms` : "";
    return (item.status === "error" ? "error" : "done") + ms;
  }

  function renderToolCard(item) {
    const card = h("div", { class: "tool-card " + (item.status || "running") });
    card.dataset.tool = item.tool || "";
    card.appendChild(
      h(
        "div",
        { class: "tool-head" },
        h("span", { class: "badge", text: "tool" }),
        h("span", { class: "srv muted", text: item.server || "?" }),
        h("span", { text: "›" }),
        h("span", { class: "name", text: item.tool || item.function || "?" }),
        h("span", { class: "state", text: toolState(item) })
      )
    );
    card.appendChild(h("div", { class: "label", text: "Arguments" }));
    card.appendChild(h("pre", { class: "args", text: pretty(item.arguments) || "{}" }));
    if (item.status === "approval") {
      const bar = h("div", { class: "approval-bar" });
      bar.appendChild(h("span", { text: "Run this tool? It may change data." }));
      bar.appendChild(
        h("button", { class: "primary approve", type: "button", onclick: () => answer(item, true) }, "Approve")
      );
      bar.appendChild(
        h("button", { class: "danger reject", type: "button", onclick: () => answer(item, false) }, "Reject")
      );
      card.appendChild(bar);
    }
    if (item.result !== undefined) {
      card.appendChild(h("div", { class: "label", text: "Result" }));
      card.appendChild(h("pre", { class: "result", text: pretty(item.result) }));
    }
    if (item.error !== undefined) {
      card.appendChild(h("div", { class: "label", text: item.status === "rejected" ? "Rejected" : "Error" }));
      card.appendChild(h("pre", { class: "error-text", text: item.error }));
    }
    return card;
  }

  function rerender(item) {
    const old = item.node;
    const fresh = renderItem(item);
    if (old && old.parentNode) old.parentNode.replaceChild(fresh, old);
    else messagesEl.appendChild(fresh);
  }

  function renderAll() {
    messagesEl.textContent = "";
    if (!state.items.length) {
      messagesEl.appendChild(
        h("div", { class: "muted empty", text: "Ask about products, stock, orders or sales. Tools run on the MCP servers listed on the right." })
      );
    }
    for (const item of state.items) messagesEl.appendChild(renderItem(item));
    scrollDown();
  }

  function addItem(item) {
    if (!state.items.length) messagesEl.textContent = "";
    state.items.push(item);
    messagesEl.appendChild(renderItem(item));
    scrollDown();
    return item;
  }

  /* ------------------------------------------------------------ chat */

  async function answer(item, approved) {
    if (!item.approvalId) return;
    const id = item.approvalId;
    item.approvalId = null;
    item.status = "running";
    rerender(item);
    try {
      const r = await fetch("/api/chat/approve", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ approvalId: id, approved }),
      });
      if (!r.ok) throw new Error((await r.json()).detail || r.statusText);
    } catch (e) {
      item.status = "error";
      item.error = "Could not send your answer: " + e.message;
      rerender(item);
    }
  }

  async function readSSE(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(event, JSON.parse(data.join("\n")));
      }
    }
  }

  /* Turns: a user message and everything that answered it (assistant tool calls, their tool
   * messages, the reply). Dropping whole turns never separates a tool call from its results. */
  function splitTurns(history) {
    const turns = [];
    for (const m of history) {
      if (!turns.length || (m && m.role === "user")) turns.push([]);
      turns[turns.length - 1].push(m);
    }
    return turns;
  }

  const len = (v) => (typeof v === "string" ? v.length : 0);

  function messageFits(m) {
    if (!m || typeof m !== "object") return false;
    if (len(m.content) > limits.maxContentChars || len(m.tool_call_id) > limits.maxIdChars) return false;
    const calls = m.tool_calls || [];
    if (!Array.isArray(calls) || calls.length > limits.maxToolCalls) return false;
    return calls.every(
      (c) =>
        c &&
        c.function &&
        len(c.id) <= limits.maxIdChars &&
        len(c.function.name) <= limits.maxNameChars &&
        len(c.function.arguments) <= limits.maxArgumentsChars
    );
  }

  function textSize(m) {
    let n = len(m.content) + len(m.tool_call_id);
    for (const c of m.tool_calls || []) n += len(c.id) + len(c.function.name) + len(c.function.arguments);
    return n;
  }

  const utf8 = new TextEncoder();
  const jsonBytes = (v) => utf8.encode(JSON.stringify(v)).length;

  /* The most recent whole turns that fit the server's limits, oldest dropped first. JS string
   * lengths count UTF-16 units, never fewer than Python's characters, so this errs on the safe
   * side. */
  function recentHistory(history, request) {
    let bytes = limits.maxBodyBytes - jsonBytes(request) - 1024;
    let messages = limits.maxMessages;
    let chars = limits.maxChars;
    const kept = [];
    const turns = splitTurns(history);
    for (let i = turns.length - 1; i >= 0; i--) {
      const turn = turns[i];
      if (turn[0].role !== "user" || !turn.every(messageFits)) break;
      const size = jsonBytes(turn);
      const text = turn.reduce((n, m) => n + textSize(m), 0);
      if (turn.length > messages || text > chars || size > bytes) break;
      messages -= turn.length;
      chars -= text;
      bytes -= size;
      kept.unshift(turn);
    }
    return kept.flat();
  }

  async function send(text) {
    if (streaming || !text.trim()) return;
    const chars = Array.from(text).length;
    if (chars > limits.maxMessageChars) {
      addItem({ kind: "error", text: `Your message has ${chars} characters; the limit is ${limits.maxMessageChars}. Please shorten it.` });
      return;
    }
    const approval = askBox.checked ? "ask" : "auto";
    const history = recentHistory(state.history, { message: text, history: [], approval });
    addItem({ kind: "user", text });
    save();
    inputEl.value = "";
    sendBtn.disabled = true;
    const controller = new AbortController();
    streaming = controller;
    let bubble = null; // the assistant item receiving tokens right now
    let pendingPaint = false;
    const cards = new Map();
    let finished = false;
    let textSinceTools = false;

    const paint = () => {
      if (pendingPaint) return;
      pendingPaint = true;
      requestAnimationFrame(() => {
        pendingPaint = false;
        if (bubble) rerender(bubble);
        scrollDown();
      });
    };
    const closeBubble = () => {
      if (bubble) {
        bubble.live = false;
        rerender(bubble);
      }
      bubble = null;
    };

    const handlers = {
      token(d) {
        textSinceTools = true;
        if (!bubble) bubble = addItem({ kind: "assistant", text: "", live: true });
        bubble.text += d.text;
        paint();
      },
      tool_call(d) {
        closeBubble();
        textSinceTools = false;
        cards.set(d.id, addItem({ kind: "tool", status: "running", ...pick(d) }));
        save();
      },
      approval_required(d) {
        const item = cards.get(d.id) || addItem({ kind: "tool", ...pick(d) });
        item.status = "approval";
        item.approvalId = d.approvalId;
        rerender(item);
        scrollDown();
      },
      tool_result(d) {
        const item = cards.get(d.id) || addItem({ kind: "tool", ...pick(d) });
        item.approvalId = null;
        item.durationMs = d.durationMs;
        if ("result" in d) {
          item.result = d.result;
          item.status = "ok";
        } else {
          item.error = d.error;
          item.status = d.rejected ? "rejected" : "error";
        }
        rerender(item);
        save();
      },
      done(d) {
        finished = true;
        closeBubble();
        if (!textSinceTools && d.response) addItem({ kind: "assistant", text: d.response });
        state.history = history.concat([{ role: "user", content: text }], d.messages || []);
        save();
      },
      error(d) {
        finished = true;
        closeBubble();
        addItem({ kind: "error", text: d.message || "Something went wrong" });
        save();
      },
    };

    try {
      const response = await fetch("/api/chat/stream", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ message: text, history, approval }),
        signal: controller.signal,
      });
      if (!response.ok) {
        let detail = response.statusText;
        try {
          const body = await response.json();
          detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
        } catch (e) {
          /* keep statusText */
        }
        handlers.error({ message: detail });
      } else {
        await readSSE(response, (event, data) => handlers[event] && handlers[event](data));
        if (!finished) handlers.error({ message: "The reply stream ended unexpectedly." });
      }
    } catch (e) {
      if (e.name !== "AbortError") handlers.error({ message: "Connection problem: " + e.message });
    } finally {
      for (const item of cards.values()) {
        if (item.status === "approval" || item.status === "running") {
          item.status = "error";
          item.error = item.error || "interrupted";
          item.approvalId = null;
          if (item.node && item.node.parentNode) rerender(item);
        }
      }
      save();
      if (streaming === controller) streaming = null;
      sendBtn.disabled = false;
      inputEl.focus();
    }
  }

  function pick(d) {
    return { id: d.id, server: d.server, tool: d.tool, function: d.function, arguments: d.arguments };
  }

  /* ------------------------------------------------------------ servers & tools */

  let toolsByServer = new Map();
  let lastSignature = "";

  async function getJSON(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return r.json();
  }

  async function refreshServers() {
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
    if (!servers.length) box.appendChild(h("p", { class: "muted", text: "No MCP servers configured (see mcp.json)." }));
    for (const s of servers) {
      const tools = toolsByServer.get(s.name) || [];
      const card = h("div", { class: "server", "data-server": s.name });
      card.appendChild(
        h(
          "div",
          { class: "server-head" },
          h("span", { class: "dot " + s.status, title: s.status }),
          h("span", { class: "name", text: s.name }),
          h("span", { class: "badge", text: s.transport }),
          h("span", { class: "muted status", text: s.status === "connected" ? `${s.tools} tools` : s.status })
        )
      );
      card.appendChild(h("div", { class: "target", text: s.url || s.command || "" }));
      if (s.error) card.appendChild(h("div", { class: "err", text: s.error }));
      const list = h("ul", { class: "tool-list" });
      for (const t of tools) {
        const btn = h(
          "button",
          { class: "tool-btn", type: "button", "data-tool": t.name, onclick: () => openRunner(t) },
          h("strong", { text: t.name }),
          " ",
          t.read_only ? h("span", { class: "badge", text: "read-only" }) : h("span", { class: "badge writes", text: "changes data" }),
          h("span", { class: "desc", text: t.description || "" })
        );
        list.appendChild(h("li", {}, btn));
      }
      card.appendChild(list);
      box.appendChild(card);
    }
  }

  /* ------------------------------------------------------------ hand-run form */

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
      if (real.length === 1) return { ...real[0], description: schema.description || real[0].description, default: schema.default };
    }
    return schema;
  }

  function skeleton(schema, root, depth) {
    schema = unwrap(schema, root);
    if (depth > 6) return null;
    if (schema.default !== undefined) return schema.default;
    if (schema.examples && schema.examples.length) return schema.examples[0];
    if (Array.isArray(schema.enum)) return schema.enum[0];
    switch (schema.type) {
      case "object": {
        const out = {};
        for (const [k, v] of Object.entries(schema.properties || {})) out[k] = skeleton(v, root, depth + 1);
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

  function openRunner(tool) {
    const root = tool.input_schema || {};
    const props = root.properties || {};
    const required = new Set(root.required || []);
    $("runner").hidden = false;
    $("runner-title").textContent = `${tool.server} › ${tool.name}`;
    $("runner-desc").textContent = tool.description || "";
    const out = $("runner-output");
    out.hidden = true;
    const form = $("runner-form");
    form.textContent = "";
    const fields = [];
    for (const [name, raw] of Object.entries(props)) {
      const schema = unwrap(raw, root);
      const id = "arg-" + name.replace(/[^\w-]/g, "_");
      const label = h("label", { for: id }, name + (required.has(name) ? " *" : ""));
      if (schema.description) label.appendChild(h("span", { class: "hint", text: " — " + schema.description }));
      form.appendChild(label);
      let input;
      let kind = schema.type;
      if (Array.isArray(schema.enum)) {
        kind = "enum";
        input = h("select", { id, name });
        if (!required.has(name)) input.appendChild(h("option", { value: "" }, "(default)"));
        for (const v of schema.enum) input.appendChild(h("option", { value: JSON.stringify(v) }, String(v)));
      } else if (kind === "boolean") {
        input = h("input", { id, name, type: "checkbox" });
        input.checked = schema.default === true;
      } else if (kind === "integer" || kind === "number") {
        input = h("input", { id, name, type: "number", step: kind === "integer" ? "1" : "any" });
        if (schema.default !== undefined && schema.default !== null) input.value = String(schema.default);
      } else if (kind === "string") {
        input = h("input", { id, name, type: "text" });
        if (typeof schema.default === "string") input.value = schema.default;
      } else {
        kind = "json";
        input = h("textarea", { id, name, rows: 4 });
        input.value = JSON.stringify(skeleton(schema, root, 0), null, 2);
      }
      form.appendChild(input);
      fields.push({ name, kind, input, required: required.has(name) });
    }
    if (!fields.length) form.appendChild(h("p", { class: "muted", text: "This tool takes no arguments." }));
    const run = h("button", { type: "submit", class: "primary" }, "Run tool");
    form.appendChild(h("div", { class: "actions" }, run));
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const args = {};
      try {
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
      } catch (e) {
        showOutput("Arguments are not valid JSON: " + e.message, true);
        return;
      }
      run.disabled = true;
      showOutput("Running…", false);
      try {
        const r = await fetch("/api/call-tool", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ server: tool.server, name: tool.name, args }),
        });
        const body = await r.json();
        if (!r.ok) {
          showOutput(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail, null, 2), true);
        } else {
          showOutput(pretty(body.result), body.isError);
        }
      } catch (e) {
        showOutput("Request failed: " + e.message, true);
      } finally {
        run.disabled = false;
      }
    };
    $("runner").scrollIntoView({ block: "nearest" });
  }

  function showOutput(text, isError) {
    const out = $("runner-output");
    out.hidden = false;
    out.className = isError ? "error" : "";
    out.textContent = text;
  }

  /* ------------------------------------------------------------ wiring */

  async function loadConfig() {
    try {
      const cfg = await getJSON("/api/config");
      $("model").textContent = cfg.llmConfigured ? `model: ${cfg.model}` : "";
      if (cfg.historyLimits) limits = { ...limits, ...cfg.historyLimits };
      askBox.checked = cfg.toolApproval !== "auto";
      const notes = [];
      if (!cfg.llmConfigured && cfg.llmMessage) notes.push(cfg.llmMessage);
      for (const e of cfg.configErrors || []) notes.push(e);
      const banner = $("banner");
      banner.textContent = notes.join("\n");
      banner.hidden = notes.length === 0;
    } catch (e) {
      /* the servers panel reports unreachable web.py */
    }
  }

  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    send(inputEl.value);
  });
  inputEl.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      send(inputEl.value);
    }
  });
  $("new-chat").addEventListener("click", () => {
    if (streaming) streaming.abort();
    streaming = null;
    state = { history: [], items: [] };
    localStorage.removeItem(STORE_KEY);
    sendBtn.disabled = false;
    renderAll();
    inputEl.focus();
  });

  load();
  renderAll();
  loadConfig();
  refreshServers();
  setInterval(refreshServers, 4000);
})();
