// Shared by every page: the live connection (a FastchatClient, fastchat-client.js: it
// reconnects, resumes and resends by itself), how its state is shown, and small DOM and time
// helpers.
//
// User text only ever reaches the DOM through textContent or attribute setters: nothing in
// this code base assigns user data to innerHTML.

import { FastchatClient } from "./fastchat-client.js";

// The character count shows from this share of the limit: out of the way until it matters.
const COUNT_FROM = 0.8;
const numbers = new Intl.NumberFormat();

const STATE_LABELS = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

/**
 * Who this page is, when the site gave it a token (`?token=` or the `fastchat_token`
 * cookie, verified by the server when it rendered the page): the token, and the name it
 * carries. Empty: anonymous, the name is the visitor's to choose.
 */
export const identity = {
  token: document.body.dataset.token || "",
  user: document.body.dataset.user || "",
};

/** Headers for the REST API: the token, when there is one. */
export function authHeaders() {
  return identity.token ? { Authorization: `Bearer ${identity.token}` } : {};
}

/** The WebSocket URL: PUBLIC_WS_URL when the server names one, else the fast port here. */
export function wsUrl() {
  const data = document.body.dataset;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return data.publicWsUrl || `${scheme}://${location.hostname}:${data.wsPort}/ws`;
}

/**
 * The page's live connection, started: the page's token on every handshake, the first
 * retry quick (0-250 ms), then full jitter up to 5 s; "offline" after three failed
 * attempts in a row (or when the browser says so).
 */
export function liveClient(user) {
  return new FastchatClient(wsUrl(), {
    token: identity.token || null,
    user: user || "anonymous",
    backoffBase: 250,
    backoffCap: 5000,
  }).start();
}

/**
 * Shows the connection's state in a `#conn-state` pill (`data-state` for styles and tests),
 * on the body (`data-conn`: the composer looks offline) and in the `#offline-banner`, if any.
 */
export function showState(el, state) {
  el.dataset.state = state;
  document.body.dataset.conn = state;
  const banner = document.getElementById("offline-banner");
  if (banner) banner.hidden = state !== "offline";
  el.querySelector(".conn__label").textContent = STATE_LABELS[state] || state;
  el.title =
    state === "connected"
      ? "Connected: new messages arrive live"
      : state === "connecting"
        ? "Connecting to the live server"
        : "Connection lost: retrying automatically; nothing you send is lost";
}

// ------------------------------------------------------------------------------- DOM helpers

/** `el("p", {class: "x", text: userText})`: text always goes through textContent. */
export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function hueOf(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

/** Fill an avatar: the name's first letter on a color derived from the name. */
export function paintAvatar(node, name) {
  const first = Array.from(name.trim())[0] || "?";
  node.textContent = first.toUpperCase();
  const hue = hueOf(name);
  node.style.setProperty("--hue", String(hue));
  // Yellows, greens and cyans are light: darken them so white initials stay readable.
  if (hue >= 45 && hue <= 200) node.style.setProperty("--avatar-l", "36%");
  node.setAttribute("aria-hidden", "true");
  return node;
}

export function avatar(name, extraClass = "") {
  return paintAvatar(el("span", { class: `avatar ${extraClass}`.trim() }), name);
}

/**
 * What a refused send shows on its item: why (`role="alert"`: it is announced), and two
 * ways out. `onEdit` puts the text back into the composer, `onDiscard` drops it.
 */
export function refusalEl(ev, verb, onEdit, onDiscard) {
  // The server's message names the field in backquotes: "`message` is 4100 characters..."
  const why = String(ev.message || ev.code).replaceAll("`", "");
  const action = (text, onClick) => {
    const node = el("button", { type: "button", class: "button button--ghost button--sm", text });
    node.addEventListener("click", onClick);
    return node;
  };
  return el("div", { class: "refusal", dataset: { code: ev.code } }, [
    el("p", { class: "refusal__reason", role: "alert", text: `Not ${verb}: ${why}.` }),
    el("div", { class: "refusal__actions" }, [action("Edit", onEdit), action("Discard", onDiscard)]),
  ]);
}

/** Put a refused text back into a field for editing, after what is already there. */
export function restoreText(field, text) {
  field.value = field.value.trim() ? `${field.value}\n${text}` : text;
  field.dispatchEvent(new Event("input")); // resize, recount
  field.focus();
  field.setSelectionRange(field.value.length, field.value.length);
}

// ------------------------------------------------------------------------------- length

/** Characters as the server counts them: code points, so an emoji counts once, not twice. */
export function charCount(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

/**
 * A live count for a field whose `data-max-chars` is the server's limit, shown in `counter`
 * from COUNT_FROM of it; over the limit the count turns into an error and the field is
 * marked invalid. Nothing is cut (a `maxlength` would silently truncate pasted text and
 * send the rest). `onChange(over)` runs on every change; the returned function recounts
 * and tells whether the text is over the limit (callers check it again before sending).
 */
export function watchLength(field, counter, onChange = () => {}) {
  const max = Number(field.dataset.maxChars);
  const check = () => {
    // UTF-16 length >= code points: most of the time no counting is needed at all.
    const n = field.value.length < max * COUNT_FROM ? 0 : charCount(field.value);
    const over = n > max;
    counter.hidden = n < max * COUNT_FROM;
    counter.textContent = over
      ? `${numbers.format(n)} / ${numbers.format(max)}: ${numbers.format(n - max)} over the limit`
      : `${numbers.format(n)} / ${numbers.format(max)}`;
    counter.classList.toggle("over", over);
    if (over) field.setAttribute("aria-invalid", "true");
    else field.removeAttribute("aria-invalid");
    onChange(over);
    return over;
  };
  field.addEventListener("input", check);
  check();
  return check;
}

// ------------------------------------------------------------------------------- time

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayAndTime = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const fullDate = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

/** A server timestamp (RFC 3339 UTC) as short local text: "14:05", "Mar 3, 14:05"... */
export function localTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return timeOnly.format(d);
  if (d.getFullYear() === now.getFullYear()) return dayAndTime.format(d);
  return fullDate.format(d);
}

export function timeEl(iso) {
  const node = el("time", { datetime: iso });
  setLocalTime(node);
  return node;
}

export function setLocalTime(node) {
  const iso = node.getAttribute("datetime");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return;
  node.textContent = localTime(iso);
  node.title = full.format(d);
}

/** Server-rendered `<time data-local>` and `.avatar[data-name]`: localize and paint them. */
export function enhance(root = document) {
  for (const node of root.querySelectorAll("time[data-local]")) setLocalTime(node);
  for (const node of root.querySelectorAll(".avatar[data-name]")) {
    paintAvatar(node, node.dataset.name);
  }
}

// ------------------------------------------------------------------------------- settings

const NAME_KEY = "fastchat.name";
const ROOM_KEY = "fastchat.room";

function stored(key) {
  try {
    return localStorage.getItem(key) || "";
  } catch {
    return ""; // storage can be disabled; the page still works, it just forgets
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* see stored() */
  }
}

export const prefs = {
  get name() {
    return stored(NAME_KEY);
  },
  set name(v) {
    store(NAME_KEY, v);
  },
  get room() {
    return stored(ROOM_KEY);
  },
  set room(v) {
    store(ROOM_KEY, v);
  },
};

/** Names and rooms: 1-64 printable characters, as the server checks them. */
export function validName(value) {
  const v = value.trim();
  return v.length > 0 && v.length <= 64 && !/[\u0000-\u001f\u007f]/.test(v) ? v : null;
}

/** The `message` of a REST error body, or a fallback. */
export async function apiError(response, fallback) {
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") return body.message;
  } catch {
    /* not JSON */
  }
  return `${fallback} (HTTP ${response.status})`;
}

// ------------------------------------------------------------------------------- edits

/**
 * Edits and deletions, shared by the chat and post pages. Who may: the author within the
 * server's EDIT_WINDOW_SECONDS, moderators always. The page can only guess the author by
 * name (events carry the name, not the token's `sub`); the server decides by `sub`, and a
 * refusal comes back as an ERROR the page shows.
 */
export const editing = {
  moderator: document.body.dataset.moderator === "true",
  windowMs: Number(document.body.dataset.editWindow || 0) * 1000,
};

/** What the viewer may do to an item by `user` sent at `ts` (ms): {edit, remove}. */
export function mayChange(user, ts) {
  if (!identity.token) return { edit: false, remove: false };
  if (editing.moderator) return { edit: user === identity.user, remove: true };
  const own = user === identity.user && Date.now() - ts < editing.windowMs;
  return { edit: own, remove: own };
}

/** Show an item's change on its node: the new text and "edited", or a tombstone. */
export function showChange(node, textClass, item, text) {
  const textNode = node.querySelector(`.${textClass}`);
  node.querySelector(".item-editor")?.remove();
  if (textNode) textNode.hidden = false;
  if (item.deleted_at) {
    node.dataset.deleted = "true";
    node.querySelector(".item-actions")?.remove();
    if (textNode) {
      textNode.textContent = "This was deleted.";
      textNode.classList.add("tombstone");
    }
    node.querySelector(".edited")?.remove();
    return;
  }
  if (textNode) textNode.textContent = text;
  if (item.edited_at && !node.querySelector(".edited")) {
    const mark = el("span", { class: "edited", text: "(edited)", title: localTime(item.edited_at) });
    const meta = metaOf(node);
    meta?.insertBefore(mark, meta.querySelector(".item-actions"));
  }
}

/**
 * Edit and Delete buttons for an item's node, as the viewer may use them: Edit opens an
 * inline editor; `send(event)` sends the EDIT_* or DELETE_* the page builds from `make`.
 */
export function addChangeActions(node, textClass, { user, ts }, make, send) {
  node.querySelector(".item-actions")?.remove();
  if (node.dataset.deleted === "true") return;
  const may = mayChange(user, ts);
  if (!may.edit && !may.remove) return;
  const button = (text, label, onClick) => {
    const b = el("button", { type: "button", class: "item-action", text, "aria-label": label });
    b.addEventListener("click", onClick);
    return b;
  };
  const actions = el("span", { class: "item-actions" }, [
    may.edit &&
      button("Edit", `Edit ${user}'s ${textClass.split("__")[0]}`, () =>
        openEditor(node, textClass, (text) => send(make("edit", text))),
      ),
    may.remove &&
      button("Delete", `Delete ${user}'s ${textClass.split("__")[0]}`, (e) => {
        // A second click confirms (no dialog): "Delete" becomes "Delete for everyone?".
        const b = e.currentTarget;
        if (b.dataset.armed === "true") {
          send(make("delete"));
          return;
        }
        b.dataset.armed = "true";
        b.textContent = "Delete for everyone?";
        setTimeout(() => {
          b.dataset.armed = "false";
          b.textContent = "Delete";
        }, 4000);
      }),
  ]);
  metaOf(node)?.append(actions);
}

/** An item's meta line (name, time): where its edited mark and actions go. */
function metaOf(node) {
  return node.querySelector(".message__meta, .comment__meta");
}

function openEditor(node, textClass, onSave) {
  const textNode = node.querySelector(`.${textClass}`);
  if (!textNode || node.querySelector(".item-editor")) return;
  const field = el("textarea", { class: "item-editor__field", rows: "2", "aria-label": "Edit" });
  field.value = textNode.textContent;
  const close = () => {
    editor.remove();
    textNode.hidden = false;
  };
  const save = () => {
    if (field.value.trim() && field.value !== textNode.textContent) onSave(field.value);
    close();
  };
  const saveButton = el("button", { type: "button", class: "button button--sm", text: "Save" });
  const cancel = el("button", {
    type: "button",
    class: "button button--ghost button--sm",
    text: "Cancel",
  });
  saveButton.addEventListener("click", save);
  cancel.addEventListener("click", close);
  field.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      save();
    } else if (e.key === "Escape") close();
  });
  const editor = el("div", { class: "item-editor" }, [
    field,
    el("div", { class: "item-editor__actions" }, [saveButton, cancel]),
  ]);
  textNode.hidden = true;
  textNode.after(editor);
  field.focus();
}
