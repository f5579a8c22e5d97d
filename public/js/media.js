/* Pictures, sounds, embedded resources and resource links of a tool result: web.py's `content`
 * list (product_mcp/chat/media.py), drawn in a tool card and under the tool form's output.
 *
 * web.py already checks what it passes, but the list is still data from any MCP server (and,
 * after a reload, from localStorage), so the page checks again: an <img> only for PNG, JPEG,
 * GIF and WebP, an <audio> only for WAV, MP3, OGG and WebM, each from a data: URL built from
 * that exact type and data that is plain base64; a link only for http and https. Anything else
 * is a line of text. Elements are made with DOM calls (h()), never from markup, and nothing
 * from the list becomes an attribute other than those two checked URLs, alt text and titles. */

import { h, plain } from "./dom.js";

const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const AUDIO_TYPES = new Set(["audio/wav", "audio/mpeg", "audio/ogg", "audio/webm"]);
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const MAX_DATA_CHARS = Math.ceil((4 * 1024 * 1024) / 3) * 4; // web.py's 4 MiB per result
const MAX_TEXT_CHARS = 100_000;

const str = (v) => (typeof v === "string" ? v : "");

function size(n) {
  if (typeof n !== "number" || !Number.isFinite(n) || n < 0) return "";
  if (n < 1024) return `${Math.round(n)} bytes`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/* "image/png · 12 KB" from what the item says about itself. */
function describe(item) {
  return [str(item.mimeType).slice(0, 130), size(item.bytes)].filter(Boolean).join(" · ");
}

/* A data: URL when `data` is plain base64 of an allowed `mime`, else null. */
function dataUrl(mime, data, allowed) {
  if (!allowed.has(mime) || typeof data !== "string") return null;
  if (data.length > MAX_DATA_CHARS || data.length % 4 !== 0 || !BASE64.test(data)) return null;
  return `data:${mime};base64,${data}`;
}

/* web.py's reason, or the page's own when it refused what web.py passed. */
function why(item) {
  if (item.omitted) return str(item.omitted) || "?";
  return [describe(item), "not a type or data this page shows"].filter(Boolean).join(" · ");
}

function note(kind, text) {
  return h("div", { class: "media-item media-omitted muted", text: `${kind} not shown: ${text}` });
}

function caption(...parts) {
  const text = parts.filter(Boolean).join(" · ");
  return text ? h("figcaption", { class: "media-caption muted", text }) : null;
}

/* An image or a sound (a content block, or a resource whose blob is one), else null. */
function picture(item, title) {
  const mime = str(item.mimeType);
  const src = dataUrl(mime, item.data, IMAGE_TYPES);
  if (!src) return null;
  const img = h("img", { class: "media-image", alt: `image (${describe(item)})` });
  img.addEventListener("error", () => {
    img.replaceWith(h("span", { class: "muted", text: "The picture could not be decoded." }));
  });
  img.src = src;
  return h("figure", { class: "media-item" }, img, caption(title, describe(item)));
}

function sound(item, title) {
  const mime = str(item.mimeType);
  const src = dataUrl(mime, item.data, AUDIO_TYPES);
  if (!src) return null;
  const audio = h("audio", { class: "media-audio", controls: true, preload: "metadata" });
  audio.src = src;
  return h("figure", { class: "media-item" }, audio, caption(title, describe(item)));
}

function link(item) {
  const uri = str(item.uri);
  const name = str(item.name) || uri;
  let url = null;
  try {
    url = new URL(uri);
  } catch (e) {
    url = null;
  }
  const row = h("div", { class: "media-item media-link" }, "Link: ");
  if (url && (url.protocol === "http:" || url.protocol === "https:")) {
    const attrs = { href: url.href, target: "_blank", rel: "noopener noreferrer" };
    row.appendChild(h("a", { ...attrs, title: url.href }, name));
  } else {
    row.appendChild(h("span", { class: "link-text", text: name }));
  }
  if (name !== uri) row.appendChild(h("span", { class: "muted", text: ` (${uri})` }));
  return row;
}

function resource(item) {
  const uri = str(item.uri);
  if (typeof item.text === "string") {
    const head = ["Resource", uri, str(item.mimeType)].filter(Boolean).join(" · ");
    return h(
      "div",
      { class: "media-item media-resource" },
      h("div", { class: "media-caption muted", text: head }),
      h("pre", { class: "resource-text", text: item.text.slice(0, MAX_TEXT_CHARS) })
    );
  }
  const shown = picture(item, uri) || sound(item, uri);
  if (shown) return shown;
  const reason = str(item.omitted) || "not a type or data this page shows";
  const mime = str(item.mimeType);
  const what = mime && reason.includes(mime) ? size(item.bytes) : describe(item);
  return note("Resource", [uri, what, reason].filter(Boolean).join(" · "));
}

function renderItem(item, resultText) {
  if (!item || typeof item !== "object") return null;
  switch (item.type) {
    case "text":
      // usually part of `result` already; shown only when it is not (e.g. next to structured
      // content, or web.py's "[N more content blocks left out]")
      if (typeof item.text !== "string" || !item.text || resultText.includes(item.text)) {
        return null;
      }
      return h("pre", { class: "media-item media-text", text: item.text.slice(0, MAX_TEXT_CHARS) });
    case "image":
      return picture(item, "") || note("Image", why(item));
    case "audio":
      return sound(item, "") || note("Sound", why(item));
    case "resource":
      return resource(item);
    case "resource_link":
      return link(item);
    default:
      return note("Content", `unknown type ${JSON.stringify(plain(item.type)).slice(0, 80)}`);
  }
}

/* The content list as a <div class="media-list">, or null when there is nothing to show
 * beyond `result` (a list of only text blocks already in it, or no list at all). */
export function renderContent(content, result) {
  if (!Array.isArray(content)) return null;
  const resultText = typeof result === "string" ? result : "";
  const list = h("div", { class: "media-list" });
  for (const item of content.slice(0, 200)) {
    const node = renderItem(item, resultText);
    if (node) list.appendChild(node);
  }
  return list.childNodes.length ? list : null;
}

/* The list without its base64, for when localStorage cannot hold it all. */
export function withoutData(content) {
  if (!Array.isArray(content)) return content;
  return content.map((item) =>
    item && typeof item === "object" && "data" in item
      ? { ...item, data: undefined, omitted: "not kept in this browser's storage" }
      : item
  );
}
