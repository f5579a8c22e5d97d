/* Safe Markdown → DOM for chat replies.
 *
 * Model output and tool results are untrusted. Nothing here ever assigns innerHTML or builds
 * HTML strings: every piece of text becomes a Text node, and the only elements created are the
 * fixed set below. Raw HTML in the input (e.g. `<img src=x onerror=alert(1)>`) therefore shows
 * up as literal text. Links keep only http:, https: and mailto: targets.
 */
(function () {
  "use strict";

  const SAFE_PROTOCOLS = ["http:", "https:", "mailto:"];

  function el(tag, children) {
    const node = document.createElement(tag);
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  /* Long unbroken runs (a 1 MB "word") get <wbr> break points every WORD_CHUNK characters:
     Chromium breaks such a run with `overflow-wrap: anywhere` in a proportional font at about
     80 µs a character, so a 1 MB reply froze the page for over a minute; with <wbr> it lays out
     in under a second. <wbr> adds nothing to the text (copy, textContent stay the same). */
  const WORD_CHUNK = 64;
  const LONG_RUN = new RegExp(`\\S{${WORD_CHUNK},}`, "g");

  function text(s) {
    if (s.length < WORD_CHUNK || !LONG_RUN.test(s)) return document.createTextNode(s);
    LONG_RUN.lastIndex = 0;
    const frag = document.createDocumentFragment();
    let pos = 0;
    for (const m of s.matchAll(LONG_RUN)) {
      if (m.index > pos) frag.appendChild(document.createTextNode(s.slice(pos, m.index)));
      for (let i = 0; i < m[0].length; i += WORD_CHUNK) {
        if (i) frag.appendChild(document.createElement("wbr"));
        frag.appendChild(document.createTextNode(m[0].slice(i, i + WORD_CHUNK)));
      }
      pos = m.index + m[0].length;
    }
    if (pos < s.length) frag.appendChild(document.createTextNode(s.slice(pos)));
    return frag;
  }

  function safeHref(url) {
    try {
      const parsed = new URL(url, "https://invalid.invalid/");
      if (!SAFE_PROTOCOLS.includes(parsed.protocol)) return null;
      if (parsed.origin === "https://invalid.invalid") return null; // relative: refuse
      return parsed.href;
    } catch (e) {
      return null;
    }
  }

  function link(label, url) {
    const href = safeHref(url);
    if (!href) return [text(label === url ? url : `${label} (${url})`)];
    const a = document.createElement("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    a.appendChild(text(label));
    return [a];
  }

  /* Inline patterns, earliest match wins; ties go to the earlier entry. */
  const INLINE = [
    { re: /\\([\\`*_{}\[\]()#+\-.!~|>])/, make: (m) => [text(m[1])] },
    { re: /`([^`\n]+)`/, make: (m) => [el("code", [text(m[1])])] },
    { re: /\*\*(?=\S)([\s\S]+?)\*\*/, make: (m) => [el("strong", inline(m[1]))] },
    { re: /__(?=\S)([\s\S]+?)__(?![A-Za-z0-9])/, make: (m) => [el("strong", inline(m[1]))] },
    { re: /~~(?=\S)([\s\S]+?)~~/, make: (m) => [el("del", inline(m[1]))] },
    { re: /\*(?=[^\s*])([^*\n]+?)\*/, make: (m) => [el("em", inline(m[1]))] },
    {
      re: /(?<![A-Za-z0-9_])_(?=[^\s_])([^_\n]+?)_(?![A-Za-z0-9_])/,
      make: (m) => [el("em", inline(m[1]))],
    },
    {
      re: /\[([^\]\n]+)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/,
      make: (m) => link(m[1], m[2]),
    },
    {
      re: /\bhttps?:\/\/[^\s<>()"'`]+[^\s<>()"'`.,;:!?\]]/,
      make: (m) => link(m[0], m[0]),
    },
  ];

  /* Scans `src` once per pattern instead of once per token: each pattern's next match is
     remembered until the text before it is consumed (a 1 MB reply with thousands of tokens used
     to rescan and re-slice the rest for every token and froze the page for a minute). */
  const SCAN = INLINE.map((p) => new RegExp(p.re.source, p.re.flags + "g"));

  function inline(src) {
    const out = [];
    const next = INLINE.map(() => undefined); // per pattern: its next match, or null for none
    let pos = 0;
    while (pos < src.length) {
      let best = null;
      for (let i = 0; i < INLINE.length; i++) {
        let m = next[i];
        if (m === undefined || (m !== null && m.index < pos)) {
          const re = SCAN[i];
          re.lastIndex = pos;
          m = next[i] = re.exec(src);
        }
        if (m && (!best || m.index < best.m.index)) best = { p: INLINE[i], m };
      }
      if (!best) {
        pushText(out, src.slice(pos));
        break;
      }
      if (best.m.index > pos) pushText(out, src.slice(pos, best.m.index));
      out.push(...best.p.make(best.m));
      pos = best.m.index + best.m[0].length;
    }
    return out;
  }

  /* Single newlines inside a paragraph are line breaks (chat style). */
  function pushText(out, s) {
    const lines = s.split("\n");
    lines.forEach((line, i) => {
      if (i > 0) out.push(document.createElement("br"));
      if (line) out.push(text(line));
    });
  }

  const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)\s*$/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const HR = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
  const QUOTE = /^\s{0,3}>\s?(.*)$/;
  const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const TABLE_SEP = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

  function startsBlock(line, next) {
    return (
      FENCE.test(line) ||
      HEADING.test(line) ||
      HR.test(line) ||
      QUOTE.test(line) ||
      ITEM.test(line) ||
      (line.includes("|") && next !== undefined && TABLE_SEP.test(next))
    );
  }

  function splitRow(line) {
    let s = line.trim();
    if (s.startsWith("|")) s = s.slice(1);
    if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
    const cells = [];
    let cur = "";
    for (let i = 0; i < s.length; i++) {
      if (s[i] === "\\" && s[i + 1] === "|") {
        cur += "|";
        i++;
      } else if (s[i] === "|") {
        cells.push(cur.trim());
        cur = "";
      } else cur += s[i];
    }
    cells.push(cur.trim());
    return cells;
  }

  function blocks(lines, depth) {
    const frag = document.createDocumentFragment();
    if (depth > 8) {
      frag.appendChild(el("p", [text(lines.join("\n"))]));
      return frag;
    }
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) {
        i++;
        continue;
      }
      let m;
      if ((m = FENCE.exec(line))) {
        const fence = m[1];
        const body = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
        i++; // closing fence (or end)
        const code = el("code", [text(body.join("\n"))]);
        if (m[2]) code.className = "lang-" + m[2].replace(/[^\w-]/g, "");
        frag.appendChild(el("pre", [code]));
        continue;
      }
      if ((m = HEADING.exec(line))) {
        const level = Math.min(6, m[1].length + 2);
        frag.appendChild(el("h" + level, inline(m[2])));
        i++;
        continue;
      }
      if (HR.test(line)) {
        frag.appendChild(document.createElement("hr"));
        i++;
        continue;
      }
      if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1])) {
        const head = splitRow(line);
        const aligns = splitRow(lines[i + 1]).map((c) =>
          c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : ""
        );
        i += 2;
        const rows = [];
        while (i < lines.length && lines[i].includes("|") && lines[i].trim()) {
          rows.push(splitRow(lines[i++]));
        }
        const cell = (tag, content, col) => {
          const c = el(tag, inline(content || ""));
          if (aligns[col]) c.className = "align-" + aligns[col];
          return c;
        };
        const thead = el("thead", [el("tr", head.map((h, c) => cell("th", h, c)))]);
        const tbody = el(
          "tbody",
          rows.map((r) => el("tr", head.map((_, c) => cell("td", r[c], c))))
        );
        frag.appendChild(el("div", [el("table", [thead, tbody])])).className = "table-wrap";
        continue;
      }
      if (QUOTE.test(line)) {
        const inner = [];
        while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
          inner.push(m[1]);
          i++;
        }
        frag.appendChild(el("blockquote", [blocks(inner, depth + 1)]));
        continue;
      }
      if ((m = ITEM.exec(line))) {
        const ordered = /\d/.test(m[2]);
        const list = document.createElement(ordered ? "ol" : "ul");
        if (ordered && parseInt(m[2], 10) !== 1) list.start = parseInt(m[2], 10);
        const indent = m[1].length;
        while (i < lines.length) {
          const im = ITEM.exec(lines[i]);
          if (!im || im[1].length !== indent || /\d/.test(im[2]) !== ordered) break;
          const body = [im[3]];
          i++;
          while (i < lines.length) {
            const l = lines[i];
            const sub = ITEM.exec(l);
            if (!l.trim()) {
              // a blank line ends the item unless indented content follows
              if (i + 1 < lines.length && /^\s{2,}\S/.test(lines[i + 1])) {
                body.push("");
                i++;
                continue;
              }
              break;
            }
            if (sub && sub[1].length <= indent) break;
            if (!sub && !/^\s/.test(l) && startsBlock(l, lines[i + 1])) break;
            body.push(l.replace(/^\s{1,4}/, ""));
            i++;
          }
          const content = blocks(body, depth + 1);
          const li = document.createElement("li");
          // Tight items: unwrap a lone paragraph.
          if (content.childNodes.length === 1 && content.firstChild.nodeName === "P") {
            while (content.firstChild.firstChild) li.appendChild(content.firstChild.firstChild);
          } else li.appendChild(content);
          list.appendChild(li);
          while (i < lines.length && !lines[i].trim()) {
            const nx = ITEM.exec(lines[i + 1] || "");
            if (nx && nx[1].length === indent) i++;
            else break;
          }
        }
        frag.appendChild(list);
        continue;
      }
      const para = [line];
      i++;
      while (i < lines.length && lines[i].trim() && !startsBlock(lines[i], lines[i + 1])) {
        para.push(lines[i++]);
      }
      frag.appendChild(el("p", inline(para.join("\n"))));
    }
    return frag;
  }

  function render(source) {
    const src = String(source == null ? "" : source).replace(/\r\n?/g, "\n");
    return blocks(src.split("\n"), 0);
  }

  window.SafeMarkdown = { render };
})();
