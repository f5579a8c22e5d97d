/* The message box grows with its text, from its two rows up to MAX_SHARE of the window's
 * height, then scrolls: a prompt from the picker filled two rows and showed only its last
 * lines. Called on typing and on a resize (js/main.js), and wherever a script sets its text
 * (which fires no `input` event). */

import { $ } from "./dom.js";

const MAX_SHARE = 0.4;

export function fitInput() {
  const el = $("input");
  el.style.height = ""; // its rows, to measure the text against
  if (el.scrollHeight <= el.clientHeight) return;
  const border = el.offsetHeight - el.clientHeight;
  const max = Math.max(el.offsetHeight, Math.round(innerHeight * MAX_SHARE));
  el.style.height = `${Math.min(el.scrollHeight + border, max)}px`;
}

/* Puts `text` in the box, grown to fit, with the caret and the view at its start. */
export function fillInput(text) {
  const el = $("input");
  el.value = text;
  fitInput();
  el.setSelectionRange(0, 0);
  el.focus();
  el.scrollTop = 0;
}
