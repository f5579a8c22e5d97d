/* On a phone the servers and tools live in a drawer that slides in from the right (style.css
 * lays it out below 800 px): the "Tools" button opens it, Close, the backdrop or Escape shut
 * it, and focus goes into it and back to the button. While it is open the page behind it is
 * inert, so Tab stays in the drawer (it went on to the chat behind the backdrop). On a desktop
 * the panel is always there and none of this shows. */

import { $ } from "./dom.js";

const sidebar = $("sidebar");
const toggle = $("drawer-toggle");
const backdrop = $("backdrop");
const behind = () => [$("topbar"), $("chat")];

export const drawerOpen = () => document.body.classList.contains("drawer-open");

export function openDrawer() {
  document.body.classList.add("drawer-open");
  toggle.setAttribute("aria-expanded", "true");
  backdrop.hidden = false;
  for (const el of behind()) el.inert = true;
  $("drawer-close").focus();
}

export function closeDrawer() {
  if (!drawerOpen()) return;
  document.body.classList.remove("drawer-open");
  toggle.setAttribute("aria-expanded", "false");
  backdrop.hidden = true;
  for (const el of behind()) el.inert = false;
  toggle.focus();
}

export function setupDrawer() {
  toggle.addEventListener("click", () => (drawerOpen() ? closeDrawer() : openDrawer()));
  $("drawer-close").addEventListener("click", closeDrawer);
  backdrop.addEventListener("click", closeDrawer);
  // Widened to the desktop layout while open: nothing may stay inert behind a gone drawer.
  matchMedia("(min-width: 801px)").addEventListener("change", (e) => e.matches && closeDrawer());
}
