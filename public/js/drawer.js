/* On a phone the servers and tools live in a drawer that slides in from the right (style.css
 * lays it out below 800 px): the "Tools" button opens it, Close, the backdrop or Escape shut
 * it, and focus goes into it and back to the button. On a desktop the panel is always there
 * and none of this shows. */

import { $ } from "./dom.js";

const sidebar = $("sidebar");
const toggle = $("drawer-toggle");
const backdrop = $("backdrop");

export const drawerOpen = () => document.body.classList.contains("drawer-open");

export function openDrawer() {
  document.body.classList.add("drawer-open");
  toggle.setAttribute("aria-expanded", "true");
  backdrop.hidden = false;
  $("drawer-close").focus();
}

export function closeDrawer() {
  if (!drawerOpen()) return;
  document.body.classList.remove("drawer-open");
  toggle.setAttribute("aria-expanded", "false");
  backdrop.hidden = true;
  toggle.focus();
}

export function setupDrawer() {
  toggle.addEventListener("click", () => (drawerOpen() ? closeDrawer() : openDrawer()));
  $("drawer-close").addEventListener("click", closeDrawer);
  backdrop.addEventListener("click", closeDrawer);
}
