/* Safe Markdown → DOM for chat replies. A module of its own because it is the one place where
 * untrusted text (model output, tool results) becomes elements: it imports nothing, and
 * tests/web/test_page_markdown.py (and _hostile) load it alone in a blank page.
 *
 * export render(source) → DocumentFragment
 *
 * Nothing here assigns innerHTML or builds HTML strings: every piece of text becomes a Text
 * node, and the only elements created are the ones listed below, with only the attributes
 * listed. Raw HTML in the input (`<script>`, `<img src=x onerror=…>`) shows up as literal text.
 *
 * The subset it renders:
 *
 * Blocks (blank lines separate them)
 *   # to ######        headings, two levels down to sit inside a chat bubble: # → <h3>,
 *                      ## → <h4>, ### → <h5>, #### to ###### → <h6>. A "#" must be followed by
 *                      a space; a closing run of "#" is dropped (so "## C#" shows "C").
 *   ``` or ~~~         fenced code → <pre><code>, class="lang-NAME" when a name follows the
 *                      fence. The body is verbatim text (no inline Markdown); it ends at a line
 *                      starting with the same fence, or at the end of the reply.
 *   ---  ***  ___      thematic break → <hr>
 *   > text             <blockquote> holding blocks again (quotes, lists, code…)
 *   - * + item         bullet list <ul><li>; "1." or "1)" numbered list <ol><li>, with
 *                      start="N" when the first number is not 1. Indented items nest; an item
 *                      that is a single paragraph has no <p> inside its <li>.
 *   - [ ] todo         task list item (any list marker; "[x]" or "[X]" is done): <li class="task">
 *   - [x] done         whose first paragraph is a <label> holding a disabled
 *                      <input type="checkbox" class="task-box"> (checked when done) and the text.
 *   | a | b |          GitHub table: a header row, then a separator row like |---|:-:|--:|,
 *   |---|--:|          then body rows up to the first line without "|" →
 *                      <div class="table-wrap"><table><thead><tr><th>…<tbody><tr><td>…;
 *                      ":-:" and "--:" columns get class="align-center" / "align-right" on
 *                      their th and td; "\|" is a pipe inside a cell; missing cells are empty,
 *                      cells past the header's count are dropped.
 *   any other lines    paragraph <p>; a single newline inside it is a <br> (chat style)
 *   Blocks nest at most 8 deep; anything deeper is shown as plain text.
 *
 * Inline (in paragraphs, headings, list items and table cells)
 *   **strong**  __strong__         <strong>
 *   *em*  _em_                     <em>; "_" inside a word (snake_case_name) stays text
 *   ~~struck~~                     <del>
 *   `code`                         <code> (verbatim, one line)
 *   \* \_ \` \[ \# …               backslash escapes: the character itself, as text
 *   [label](url) [label](url "t")  <a href="url" target="_blank"
 *                                  rel="noopener noreferrer nofollow">label</a>; the label is
 *                                  plain text (no Markdown inside), the title is dropped; the
 *                                  URL ends at a space, ")" or ">"
 *   https://… http://…             a bare URL becomes the same link, without trailing
 *                                  punctuation such as "." or ","
 *   Links keep only absolute http:, https: and mailto: targets. Any other target
 *   (javascript:, data:, relative paths) is shown as the text "label (url)", or just the URL.
 *   Images are not rendered: ![alt](src) is a "!" followed by the link above.
 *   Runs of 64 or more non-space characters get <wbr> break points every 64 characters; the
 *   text itself (textContent, copy and paste) is unchanged.
 *
 * Elements created: p br wbr h3 h4 h5 h6 strong em del code pre blockquote ul ol li hr div
 * table thead tbody tr th td a label input. Attributes set: class (lang-*, align-*, table-wrap,
 * task, task-box), start (ol), href, target, rel (a), type, disabled, checked (input).
 *
 * Every scan is linear in the length of its input, so a hostile 1 MB reply renders in about a
 * second: no regular expression below can retry a long run from many starting points.
 */

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
// What must stay with the character before it: the second half of a surrogate pair, a
// combining mark, a joiner, a variation selector, a skin tone, a tag (a cut there showed "�").
const JOINED = /^(?:[\uDC00-\uDFFF\p{M}\u200D\uFE00-\uFE0F]|[\u{1F3FB}-\u{1F3FF}]|[\u{E0020}-\u{E007F}])/u;

const FLAG_HALF = /^[\u{1F1E6}-\u{1F1FF}]/u; // a regional indicator: two make a flag

/* Whether `at` sits between the two regional indicators of a flag (counted back a chunk). */
function midFlag(run, at) {
  if (!FLAG_HALF.test(run.slice(at, at + 2))) return false;
  let before = 0;
  for (let i = at - 2; i >= Math.max(0, at - WORD_CHUNK) && FLAG_HALF.test(run.slice(i, i + 2)); i -= 2) before++;
  return before % 2 === 1;
}

/* Where to cut `run` at or after `at`: not inside a character (at most WORD_CHUNK further). */
function cutAt(run, at) {
  const end = Math.min(run.length, at + WORD_CHUNK);
  while (at < end && (JOINED.test(run.slice(at, at + 2)) || run[at - 1] === "\u200D" || midFlag(run, at))) at++;
  return /[\uDC00-\uDFFF]/.test(run[at] ?? "") ? at + 1 : at; // 64 marks in a row: still whole
}

function text(s) {
  if (s.length < WORD_CHUNK || !LONG_RUN.test(s)) return document.createTextNode(s);
  LONG_RUN.lastIndex = 0;
  const frag = document.createDocumentFragment();
  let pos = 0;
  for (const m of s.matchAll(LONG_RUN)) {
    if (m.index > pos) frag.appendChild(document.createTextNode(s.slice(pos, m.index)));
    for (let i = 0; i < m[0].length; ) {
      if (i) frag.appendChild(document.createElement("wbr"));
      const next = cutAt(m[0], i + WORD_CHUNK);
      frag.appendChild(document.createTextNode(m[0].slice(i, next)));
      i = next;
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

/* ------------------------------------------------------------ inline */

/* A match found without a regular expression, shaped like RegExp.exec's result. */
function found(src, start, end, ...groups) {
  const m = [src.slice(start, end), ...groups];
  m.index = start;
  return m;
}

/* The earliest match of `re` at or after `pos`. */
function byRegex(re) {
  const scan = new RegExp(re.source, re.flags + "g");
  return (src, pos) => {
    scan.lastIndex = pos;
    return scan.exec(src);
  };
}

const isSpace = (c) => c !== undefined && /\s/.test(c);
const isAlnum = (c) => c !== undefined && /[A-Za-z0-9]/.test(c);

/* __strong__: the matches of /__(?=\S)([\s\S]+?)__(?![A-Za-z0-9])/, found in one pass. That
   regex tried every "__" again when no closing "__" followed (1 MB of "__a" took minutes); but
   if the first opener has no closer, no later opener has one either. */
function findUnderscoreStrong(src, pos) {
  let open = src.indexOf("__", pos);
  while (open >= 0 && (open + 2 >= src.length || isSpace(src[open + 2]))) {
    open = src.indexOf("__", open + 1);
  }
  if (open < 0) return null;
  let close = src.indexOf("__", open + 3);
  while (close >= 0 && isAlnum(src[close + 2])) close = src.indexOf("__", close + 1);
  return close < 0 ? null : found(src, open, close + 2, src.slice(open + 2, close));
}

/* [label](url "title"): the matches of
     /\[([^\]\n]+)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/
   found in one pass. That regex retried every "[" of a line up to its "]" or end, and every
   "](" up to the end of its URL (1 MB of "[" or "[a](x" took minutes). Here: all the "[" before
   a "]" share that "]", so when it fails they all do; and every "](" whose URL runs to the same
   end as one that failed fails the same way. */
const LINK_OPEN = /\(\s*<?/y;
const URL_END = /[)\s>]/g;
const LINK_CLOSE = />?(?:\s+"[^"]*")?\s*\)/y;

function findLink(src, pos) {
  let deadEnd = -1; // a URL running to here was followed by something other than ")"
  let open = src.indexOf("[", pos);
  while (open >= 0) {
    let close = open + 1;
    while (close < src.length && src[close] !== "]" && src[close] !== "\n") close++;
    if (close >= src.length) return null;
    if (src[close] === "]" && close > open + 1 && src[close + 1] === "(") {
      LINK_OPEN.lastIndex = close + 1;
      LINK_OPEN.exec(src);
      let start = LINK_OPEN.lastIndex;
      if (start > deadEnd) {
        URL_END.lastIndex = start;
        const end = URL_END.exec(src) ? URL_END.lastIndex - 1 : src.length;
        if (end === start && src[start - 1] === "<") start--; // "(<)": the "<" is the URL
        if (end > start) {
          LINK_CLOSE.lastIndex = end;
          if (LINK_CLOSE.exec(src)) {
            const label = src.slice(open + 1, close);
            return found(src, open, LINK_CLOSE.lastIndex, label, src.slice(start, end));
          }
          deadEnd = end;
        }
      }
    }
    open = src.indexOf("[", close + 1);
  }
  return null;
}

/* Inline patterns, earliest match wins; ties go to the earlier entry. */
const INLINE = [
  { find: byRegex(/\\([\\`*_{}\[\]()#+\-.!~|>])/), make: (m) => [text(m[1])] },
  { find: byRegex(/`([^`\n]+)`/), make: (m) => [el("code", [text(m[1])])] },
  { find: byRegex(/\*\*(?=\S)([\s\S]+?)\*\*/), make: (m) => [el("strong", inline(m[1]))] },
  { find: findUnderscoreStrong, make: (m) => [el("strong", inline(m[1]))] },
  { find: byRegex(/~~(?=\S)([\s\S]+?)~~/), make: (m) => [el("del", inline(m[1]))] },
  { find: byRegex(/\*(?=[^\s*])([^*\n]+?)\*/), make: (m) => [el("em", inline(m[1]))] },
  {
    find: byRegex(/(?<![A-Za-z0-9_])_(?=[^\s_])([^_\n]+?)_(?![A-Za-z0-9_])/),
    make: (m) => [el("em", inline(m[1]))],
  },
  { find: findLink, make: (m) => link(m[1], m[2]) },
  {
    find: byRegex(/\bhttps?:\/\/[^\s<>()"'`]+[^\s<>()"'`.,;:!?\]]/),
    make: (m) => link(m[0], m[0]),
  },
];

/* Scans `src` once per pattern instead of once per token: each pattern's next match is
   remembered until the text before it is consumed (a 1 MB reply with thousands of tokens used
   to rescan and re-slice the rest for every token and froze the page for a minute). */
function inline(src) {
  const out = [];
  const next = INLINE.map(() => undefined); // per pattern: its next match, or null for none
  let pos = 0;
  while (pos < src.length) {
    let best = null;
    for (let i = 0; i < INLINE.length; i++) {
      let m = next[i];
      if (m === undefined || (m !== null && m.index < pos)) m = next[i] = INLINE[i].find(src, pos);
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

/* ------------------------------------------------------------ blocks */

/* Each pattern reads the start of a line and hands the rest to plain string code: patterns
   like /\s+(.*?)\s*#*\s*$/ backtrack over a long run of spaces or "#" from every position. */
const FENCE = /^\s{0,3}(`{3,}|~{3,})([\s\S]*)$/;
const LANG = /^[\w+#.-]*$/;
const HEADING = /^\s{0,3}(#{1,6})\s([\s\S]*)$/;
const HR = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s([\s\S]*)$/;
const SEP_CELL = /^:?-+:?$/;

/* ```lang: the fence and the language name, or null. */
function fence(line) {
  const m = FENCE.exec(line);
  if (!m) return null;
  const lang = m[2].trim();
  return LANG.test(lang) ? { fence: m[1], lang } : null;
}

/* # Title #: the level and the text without the closing run of "#", or null. */
function heading(line) {
  const m = HEADING.exec(line);
  if (!m) return null;
  let s = m[2].trim();
  let end = s.length;
  while (end > 0 && s[end - 1] === "#") end--;
  return { level: m[1].length, text: s.slice(0, end).trimEnd() };
}

/* - item / 1. item: indent, marker and the item's text, or null. */
function item(line) {
  const m = ITEM.exec(line);
  return m && { indent: m[1].length, marker: m[2], text: m[3].trimStart() };
}

/* - [ ] todo / - [x] done: the item's body without its box and whether it is done, or null when
   it is no task (what follows the box must begin a paragraph, which will hold the checkbox). */
const TASK = /^\[([ xX])\][ \t]+(?=\S)/;

function task(body) {
  const m = TASK.exec(body[0]);
  if (!m) return null;
  const rest = body[0].slice(m[0].length);
  return startsBlock(rest, body[1]) ? null : { done: m[1] !== " ", body: [rest, ...body.slice(1)] };
}

/* The item's first paragraph (its only one when the <p> was unwrapped) becomes a <label> with a
   disabled checkbox before its text: a box that shows the state, named by the item's words. */
function taskBox(li, done) {
  const host = li.firstChild && li.firstChild.nodeName === "P" ? li.firstChild : li;
  const box = document.createElement("input");
  box.type = "checkbox";
  box.className = "task-box";
  box.disabled = true;
  box.defaultChecked = done;
  const label = el("label", [box]);
  while (host.firstChild) label.appendChild(host.firstChild);
  host.appendChild(label);
  li.className = "task";
}

/* |---|:--:|--:| */
function isTableSep(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|")) s = s.slice(0, -1);
  return s.split("|").every((cell) => SEP_CELL.test(cell.trim()));
}

function startsBlock(line, next) {
  return (
    fence(line) !== null ||
    heading(line) !== null ||
    HR.test(line) ||
    QUOTE.test(line) ||
    item(line) !== null ||
    (line.includes("|") && next !== undefined && isTableSep(next))
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
    if ((m = fence(line))) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(m.fence)) body.push(lines[i++]);
      i++; // closing fence (or end)
      const code = el("code", [text(body.join("\n"))]);
      if (m.lang) code.className = "lang-" + m.lang.replace(/[^\w-]/g, "");
      frag.appendChild(el("pre", [code]));
      continue;
    }
    if ((m = heading(line))) {
      frag.appendChild(el("h" + Math.min(6, m.level + 2), inline(m.text)));
      i++;
      continue;
    }
    if (HR.test(line)) {
      frag.appendChild(document.createElement("hr"));
      i++;
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && isTableSep(lines[i + 1])) {
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
      const wrap = el("div", [el("table", [thead, tbody])]);
      wrap.className = "table-wrap";
      frag.appendChild(wrap);
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
    if ((m = item(line))) {
      const ordered = /\d/.test(m.marker);
      const list = document.createElement(ordered ? "ol" : "ul");
      if (ordered && parseInt(m.marker, 10) !== 1) list.start = parseInt(m.marker, 10);
      const indent = m.indent;
      while (i < lines.length) {
        const im = item(lines[i]);
        if (!im || im.indent !== indent || /\d/.test(im.marker) !== ordered) break;
        const body = [im.text];
        i++;
        while (i < lines.length) {
          const l = lines[i];
          const sub = item(l);
          if (!l.trim()) {
            // a blank line ends the item unless indented content follows
            if (i + 1 < lines.length && /^\s{2,}\S/.test(lines[i + 1])) {
              body.push("");
              i++;
              continue;
            }
            break;
          }
          if (sub && sub.indent <= indent) break;
          if (!sub && !/^\s/.test(l) && startsBlock(l, lines[i + 1])) break;
          body.push(l.replace(/^\s{1,4}/, ""));
          i++;
        }
        const todo = task(body);
        const content = blocks(todo ? todo.body : body, depth + 1);
        const li = document.createElement("li");
        // Tight items: unwrap a lone paragraph.
        if (content.childNodes.length === 1 && content.firstChild.nodeName === "P") {
          while (content.firstChild.firstChild) li.appendChild(content.firstChild.firstChild);
        } else li.appendChild(content);
        if (todo) taskBox(li, todo.done);
        list.appendChild(li);
        while (i < lines.length && !lines[i].trim()) {
          const nx = item(lines[i + 1] || "");
          if (nx && nx.indent === indent) i++;
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

/* Text, whatever came (a stored chat may hold anything; String() throws on {"toString": 1}). */
function asText(v) {
  if (typeof v === "string") return v;
  if (v === null || v === undefined) return "";
  try {
    return typeof v === "object" ? JSON.stringify(v) ?? "" : String(v);
  } catch (e) {
    return "";
  }
}

export function render(source) {
  const src = asText(source).replace(/\r\n?/g, "\n");
  return blocks(src.split("\n"), 0);
}
