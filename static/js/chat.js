// The /chat page: history over REST, then JOIN_ROOM with the last id seen, then live.
//
// Every message is shown once and in id order: confirmed messages live in `byId` and are
// inserted at their place; what the user wrote waits at the bottom as "pending" until it is
// stored. The connection is a FastchatClient (fastchat-client.js): after a drop it rejoins
// with the last id seen, the server replays what was missed, and it sends again what is
// unconfirmed. A send the server refuses for good stays at the bottom, marked, until the
// user edits or discards it; it is never resent.

import { FastchatError, newClientId } from "./fastchat-client.js";
import {
  addChangeActions,
  authHeaders,
  avatar,
  el,
  identity,
  liveClient,
  prefs,
  refusalEl,
  restoreText,
  showChange,
  showState,
  timeEl,
  validName,
  watchLength,
} from "./live.js";
import { setupSearch } from "./search.js";

const HISTORY_PAGE = 50;
const GROUP_MS = 5 * 60 * 1000; // consecutive messages of one author within this are grouped
const TYPING_EVERY_MS = 2000; // send TYPING at most this often while typing
const TYPING_SHOWN_MS = 3000; // how long "X is typing…" stays without a new TYPING
const NEAR_BOTTOM_PX = 80;

const $ = (id) => document.getElementById(id);
const app = $("chat-app");
const joinForm = $("join-form");
const nameInput = $("name");
const roomInput = $("room");
const joinError = $("join-error");
const roomName = $("room-name");
const memberCount = $("member-count");
const connState = $("conn-state");
const scroller = $("scroller");
const list = $("messages");
const placeholder = $("chat-empty");
const loadOlderButton = $("load-older");
const historyStart = $("history-start");
const typingLine = $("typing");
const notice = $("notice");
const jump = $("jump");
const composerForm = $("composer-form");
const composer = $("composer");
const sendButton = $("send");
const lengthEl = $("composer-length");
const membersList = $("members");
const membersTotal = $("members-total");
const membersEmpty = $("members-empty");
const roomHash = document.querySelector(".chat__hash");

let me = "";
let room = "";
let generation = 0; // bumps on every room switch; stale async results check it
let historyLoaded = false;
let historyLoading = false;
let joined = false; // ROOM_JOINED received on the current connection
let joinAsked = false; // this room's JOIN_ROOM handed to the client (its history is in)
// Messages written in a room before its join was asked for (its history still loading):
// the client would send them at once, and the server refuse them as not_joined. They go
// when the join is asked for, and the client holds them until it is answered.
const held = new Map(); // room -> items
let lastId = 0; // highest message id seen in this room: the resume point
let oldestId = null;
let hasMore = false;
let loadingOlder = false;
let lastTypingSent = 0;
let noticeTimer = null;
const byId = new Map(); // id -> element, confirmed messages of the current room
const members = new Map(); // name -> connections we know of
// In a big room the server sends counts, not names (PRESENCE without `changes`, or a
// ROOM_JOINED listing fewer names than members): then the count shown is the server's.
let crowd = null;
const typers = new Map(); // name -> timeout
const sending = new Map(); // client_id -> { event, node }: sent, not yet stored, any room
const refused = new Map(); // client_id -> such an item the server refused for good, any room

const chat = liveClient(identity.user || prefs.name);
const overLimit = watchLength(composer, lengthEl, (over) => {
  sendButton.disabled = !room || over;
});

// ------------------------------------------------------------------------------- rendering

function isNearBottom() {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  scroller.scrollTop = scroller.scrollHeight;
  jump.hidden = true;
}

function messageEl(m, pending) {
  const { id, user, message, timestamp } = m;
  const ts = pending ? Date.now() : Date.parse(timestamp);
  const meta = el("div", { class: "message__meta" }, [
    el("span", { class: "message__user", text: user }),
    pending ? el("span", { class: "message__status" }) : timeEl(timestamp),
  ]);
  const node = el(
    "div",
    {
      class: `message${user === me ? " own" : ""}${pending ? " pending" : ""}`,
      dataset: { user, ts: String(ts) },
    },
    [
      avatar(user, "message__avatar"),
      el("div", { class: "message__bubble" }, [
        meta,
        el("p", { class: "message__text", text: message }),
      ]),
    ],
  );
  if (!pending) {
    node.dataset.id = String(id);
    showChange(node, "message__text", m, message);
    addChangeActions(node, "message__text", { user, ts }, changeOf(id), quietly);
  }
  return node;
}

/** Sends the EDIT_MESSAGE or DELETE_MESSAGE of message `id`. */
function changeOf(id) {
  return (kind, text) => (kind === "edit" ? chat.editMessage(id, text) : chat.deleteMessage(id));
}

/** An edit's or deletion's outcome: the change arrives as an event, a refusal as an ERROR
 * event (shown by `onError`). */
function quietly(promise) {
  promise.catch(() => {});
}

/** Collapse the avatar and name of a message that follows its author's previous one. */
function regroup(node) {
  if (!node) return;
  const prev = node.previousElementSibling;
  const cont =
    prev !== null &&
    prev.dataset.user === node.dataset.user &&
    Number(node.dataset.ts) - Number(prev.dataset.ts) < GROUP_MS;
  node.classList.toggle("cont", cont);
}

/** The first message not confirmed by the server (pending or refused): they stay last. */
function firstPending() {
  return list.querySelector(".message:not([data-id])");
}

/** Insert a confirmed message at its place by id; false if it is already shown. */
function addMessage(m) {
  if (byId.has(m.id)) return false;
  const node = messageEl(m, false);
  byId.set(m.id, node);
  // Almost always the newest: it goes just above the pending ones. Older ones (history
  // pages, a rare reordering) walk back to their place.
  let before = firstPending();
  let cursor = before ? before.previousElementSibling : list.lastElementChild;
  while (cursor !== null && Number(cursor.dataset.id) > m.id) {
    before = cursor;
    cursor = cursor.previousElementSibling;
  }
  list.insertBefore(node, before);
  regroup(node);
  regroup(node.nextElementSibling);
  if (m.id > lastId) lastId = m.id;
  if (oldestId === null || m.id < oldestId) oldestId = m.id;
  placeholder.hidden = true;
  return true;
}

function pendingStatus() {
  return chat.connected && joined ? "Sending…" : "Queued: sends when back online";
}

function refreshPending() {
  for (const item of sending.values()) {
    if (item.node?.isConnected) {
      item.node.querySelector(".message__status").textContent = pendingStatus();
    }
  }
}

function showPending(item) {
  item.node = messageEl(
    { user: item.event.user, message: item.event.message, timestamp: "" },
    true,
  );
  item.node.dataset.clientId = item.event.client_id;
  item.node.querySelector(".message__status").textContent = pendingStatus();
  list.append(item.node);
  regroup(item.node);
  placeholder.hidden = true;
}

/** Mark a refused send's bubble: why, and Edit / Discard. */
function showRefused(item, ev) {
  refused.set(item.event.client_id, item);
  item.refusal = ev;
  const node = item.node;
  node.classList.replace("pending", "refused");
  node.querySelector(".message__status").textContent = "Not sent";
  node.querySelector(".message__bubble").append(
    refusalEl(
      ev,
      "sent",
      () => {
        restoreText(composer, item.event.message);
        discard(item);
      },
      () => {
        discard(item);
        composer.focus();
      },
    ),
  );
}

function discard(item) {
  refused.delete(item.event.client_id);
  const next = item.node.nextElementSibling;
  item.node.remove();
  regroup(next);
  placeholder.hidden = list.childElementCount > 0;
}

function renderMembers() {
  const names = [...members.keys()].sort((a, b) =>
    a === me ? -1 : b === me ? 1 : a.localeCompare(b),
  );
  membersList.replaceChildren(
    ...names.map((name) =>
      el("li", { class: "member", dataset: { user: name } }, [
        avatar(name, "avatar--sm"),
        el("span", { class: "member__name", text: name }),
        name === me ? el("span", { class: "member__you", text: "you" }) : null,
      ]),
    ),
  );
  const total = crowd ?? names.length;
  membersTotal.textContent = String(total);
  membersEmpty.hidden = names.length > 0;
  memberCount.hidden = total === 0;
  memberCount.textContent = `${total.toLocaleString()} online`;
}

function renderTyping() {
  const names = [...typers.keys()];
  typingLine.textContent =
    names.length === 0
      ? ""
      : names.length === 1
        ? `${names[0]} is typing…`
        : names.length === 2
          ? `${names[0]} and ${names[1]} are typing…`
          : "Several people are typing…";
  typingLine.classList.toggle("active", names.length > 0);
}

function stopTyping(user) {
  const timer = typers.get(user);
  if (timer === undefined) return;
  clearTimeout(timer);
  typers.delete(user);
  renderTyping();
}

function renderHistoryEdge() {
  loadOlderButton.hidden = !hasMore;
  historyStart.hidden = hasMore || !historyLoaded || byId.size === 0;
  historyStart.textContent = `This is the start of #${room}.`;
}

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    notice.hidden = true;
  }, 6000);
}

function setJoined(value) {
  joined = value;
  app.dataset.joined = String(value);
  refreshPending();
}

// ------------------------------------------------------------------------------- room

function historyUrl(params) {
  const query = new URLSearchParams({ limit: String(HISTORY_PAGE), ...params });
  return `/api/v1/messages/${encodeURIComponent(room)}?${query}`;
}

async function enter(newRoom, name) {
  if (room && room !== newRoom) leaveWhenSent(room);
  generation += 1;
  joinAsked = false;
  historyLoading = false;
  room = newRoom;
  me = name;
  historyLoaded = false;
  lastId = 0;
  oldestId = null;
  hasMore = false;
  byId.clear();
  members.clear();
  crowd = null;
  for (const timer of typers.values()) clearTimeout(timer);
  typers.clear();
  list.replaceChildren();
  setJoined(false);
  app.dataset.room = room;
  roomName.textContent = room;
  roomHash.hidden = false;
  document.title = `#${room} · fastchat`;
  placeholder.textContent = "Loading messages…";
  placeholder.hidden = false;
  composer.disabled = false;
  overLimit();
  setPlaceholder();
  renderMembers();
  renderTyping();
  renderHistoryEdge();
  // What was written in this room earlier and never confirmed is still on its way.
  for (const item of refused.values()) {
    if (item.event.room !== room) continue;
    showPending(item);
    showRefused(item, item.refusal);
  }
  for (const item of sending.values()) if (item.event.room === room) showPending(item);
  await loadHistory();
}

/** Leave `old` once what was sent there is stored (or refused): a send to a room left
 * would be refused as not_joined. */
function leaveWhenSent(old) {
  const waiting = [...sending.values()].filter((i) => i.event.room === old && i.done);
  Promise.allSettled(waiting.map((i) => i.done)).then(() => {
    if (room !== old) chat.leave(old).catch(() => {});
  });
}

async function loadHistory() {
  if (historyLoading) return; // the fetch in flight joins when it is done
  const gen = generation;
  let body;
  historyLoading = true;
  try {
    const response = await fetch(historyUrl({}), { headers: authHeaders() });
    if (response.status === 401 || response.status === 403) {
      // Not for this visitor (a private room, a refused token): say so, do not retry.
      const refusal = await response.json().catch(() => ({}));
      if (gen === generation) {
        placeholder.textContent = refusal.message || "You may not read this room.";
        composer.disabled = true;
        sendButton.disabled = true;
      }
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    body = await response.json();
  } catch {
    // The server is away: try again soon (and once connected again, at once).
    if (gen === generation) {
      placeholder.textContent = "Cannot load messages yet: retrying…";
      setTimeout(() => {
        if (gen === generation && !historyLoaded) loadHistory();
      }, 3000);
    }
    return;
  } finally {
    if (gen === generation) historyLoading = false;
  }
  if (gen !== generation) return;
  for (const m of body.messages) addMessage(m);
  hasMore = body.has_more;
  historyLoaded = true;
  placeholder.textContent = "No messages yet. Say hello!";
  placeholder.hidden = list.childElementCount > 0;
  renderHistoryEdge();
  scrollToBottom();
  sendJoin();
}

function sendJoin() {
  if (!room || !historyLoaded) return;
  // last_id: the server replays everything after it, then goes live: no gap, no duplicate.
  // The client rejoins by itself after every reconnect, from the last id it saw. A join
  // not answered in time (the server slow, or away) is tried again; a refusal is an ERROR
  // event (`onError`).
  const gen = generation;
  const asked = chat.join(room, { user: me, lastId });
  if (!joinAsked) {
    joinAsked = true;
    for (const item of held.get(room) ?? []) transmit(item);
    held.delete(room);
  }
  asked.catch((err) => {
    if (err instanceof FastchatError && err.code !== "timeout") return;
    setTimeout(() => {
      if (gen === generation && !joined) sendJoin();
    }, 1000);
  });
}

async function loadOlder() {
  if (!hasMore || loadingOlder || oldestId === null) return;
  loadingOlder = true;
  loadOlderButton.disabled = true;
  loadOlderButton.textContent = "Loading…";
  const gen = generation;
  try {
    const response = await fetch(historyUrl({ before: String(oldestId) }));
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    if (gen !== generation) return;
    const height = scroller.scrollHeight;
    const top = scroller.scrollTop;
    for (const m of body.messages) addMessage(m);
    hasMore = body.has_more;
    // Keep the message the reader was looking at in place.
    scroller.scrollTop = top + (scroller.scrollHeight - height);
  } catch {
    if (gen === generation) showNotice("Could not load older messages. Try again.");
  } finally {
    loadingOlder = false;
    loadOlderButton.disabled = false;
    loadOlderButton.textContent = "Load older messages";
    if (gen === generation) renderHistoryEdge();
  }
}

// ------------------------------------------------------------------------------- connection

function setPlaceholder() {
  if (!room) return;
  composer.placeholder =
    chat.state === "offline" ? "Offline: messages send when you reconnect" : `Message #${room}`;
}

function onState({ state }) {
  showState(connState, state);
  setPlaceholder();
  if (state !== "connected") {
    setJoined(false);
    for (const timer of typers.values()) clearTimeout(timer);
    typers.clear();
    renderTyping();
  } else if (room && !historyLoaded) {
    loadHistory(); // it failed while the server was away
  }
  refreshPending();
}

/** The send `clientId` is stored: its pending bubble gives way to the message. */
function stored(clientId) {
  const item = sending.get(clientId);
  if (item === undefined) return undefined;
  sending.delete(clientId);
  if (item.node) {
    const next = item.node.nextElementSibling;
    item.node.remove();
    regroup(next);
  }
  return item;
}

function onEvent(ev) {
  switch (ev.type) {
    case "CHAT_MESSAGE": {
      const item = stored(ev.client_id);
      if (ev.room !== room) return;
      const wasNear = isNearBottom();
      if (addMessage(ev)) {
        stopTyping(ev.user);
        if (byId.size === 1) renderHistoryEdge();
        if (wasNear || item) scrollToBottom();
        else jump.hidden = false;
      }
      return;
    }
    case "ROOM_JOINED": {
      if (ev.room !== room) return;
      members.clear();
      for (const name of ev.users || []) members.set(name, 1);
      if (!members.has(me)) members.set(me, 1);
      crowd = ev.members > members.size ? ev.members : null;
      renderMembers();
      app.dataset.replayed = String(ev.replayed || 0); // what the server resent (tests read it)
      setJoined(true);
      return;
    }
    case "MESSAGE_EDITED":
    case "MESSAGE_DELETED": {
      if (ev.room !== room) return;
      const node = byId.get(ev.id);
      if (node) showChange(node, "message__text", ev, ev.message);
      return;
    }
    case "USER_JOINED": {
      if (ev.room !== room) return;
      // `sessions`: this user's connections in the room, as the server counts them.
      members.set(ev.user, ev.sessions ?? (members.get(ev.user) || 0) + 1);
      if (crowd !== null) crowd = ev.members;
      renderMembers();
      return;
    }
    case "PRESENCE": {
      // Several joins and leaves at once (`changes`: each user's sessions now, 0 for gone),
      // or, in a big room, the count alone.
      if (ev.room !== room) return;
      if (!ev.changes) {
        crowd = ev.members;
      } else {
        for (const { user, sessions } of ev.changes) {
          if (sessions > 0) members.set(user, sessions);
          else {
            members.delete(user);
            stopTyping(user);
          }
        }
        if (crowd !== null) crowd = ev.members;
      }
      renderMembers();
      return;
    }
    case "USER_LEFT": {
      if (ev.room !== room) return;
      const left = ev.sessions ?? (members.get(ev.user) || 1) - 1;
      if (left > 0) members.set(ev.user, left);
      else members.delete(ev.user);
      if (crowd !== null) crowd = ev.members;
      renderMembers();
      stopTyping(ev.user);
      return;
    }
    case "TYPING_STOPPED": {
      if (ev.room === room) stopTyping(ev.user);
      return;
    }
    case "TYPING": {
      if (ev.room !== room || ev.user === me) return;
      clearTimeout(typers.get(ev.user));
      typers.set(
        ev.user,
        setTimeout(() => stopTyping(ev.user), TYPING_SHOWN_MS),
      );
      renderTyping();
      return;
    }
    case "ERROR": {
      // A send's refusal (client_id) is its promise's (`send`); a read's (request_id) too.
      if (ev.client_id != null || ev.request_id != null) return;
      if (ev.code === "banned" || ev.code === "forbidden_room") {
        // Out of this room (a moderator's ban, a private room): say so, and stay out.
        setJoined(false);
        composer.disabled = true;
        sendButton.disabled = true;
        placeholder.textContent = ev.message;
        placeholder.hidden = false;
        showNotice(ev.message);
        return;
      }
      showNotice(ev.message || ev.code);
      return;
    }
    default:
      return;
  }
}

// ------------------------------------------------------------------------------- input

function send() {
  const text = composer.value;
  if (!room || !text.trim() || overLimit()) return;
  const event = { type: "CHAT_MESSAGE", room, user: me, message: text, client_id: newClientId() };
  const item = { event, node: null };
  sending.set(event.client_id, item);
  showPending(item);
  // Stored: the event (above) has usually shown it already; an answer to a send repeated
  // after a reconnect may come as no event (the replay showed it), so show it here too.
  // Refused for good: marked. Rate limits and a busy database are retried by the client.
  if (joinAsked) transmit(item);
  else held.set(room, [...(held.get(room) ?? []), item]);
  lastTypingSent = 0; // the others stop showing "typing" when this arrives; the next key restarts it
  composer.value = "";
  overLimit();
  autosize();
  scrollToBottom();
}

/** Hand a written message to the client: it sends it (again after reconnects) until it is
 * stored or refused for good. */
function transmit(item) {
  const { event } = item;
  const sent = chat.send(event.room, event.message, {
    user: event.user,
    clientId: event.client_id,
  });
  item.done = sent.then(
    (m) => {
      stored(m.client_id);
      if (m.room === room && addMessage(m)) scrollToBottom();
    },
    (err) => {
      if (!(err instanceof FastchatError) || !sending.has(event.client_id)) return;
      sending.delete(event.client_id);
      if (item.node?.isConnected) showRefused(item, err);
      else refused.set(event.client_id, Object.assign(item, { refusal: err }));
    },
  );
}

function autosize() {
  composer.style.height = "auto";
  composer.style.height = `${Math.min(composer.scrollHeight, 160)}px`;
}

joinForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const name = validName(nameInput.value);
  const newRoom = validName(roomInput.value || "general");
  if (!name || !newRoom) {
    joinError.textContent = !name
      ? "Choose a name (1-64 characters)."
      : "Choose a room name (1-64 characters).";
    joinError.hidden = false;
    (name ? roomInput : nameInput).focus();
    return;
  }
  joinError.hidden = true;
  nameInput.value = name;
  roomInput.value = newRoom;
  prefs.name = name;
  prefs.room = newRoom;
  enter(newRoom, name);
  composer.focus();
});

// On a phone, focusing the composer on load would throw the keyboard over the page.
const finePointer = window.matchMedia("(pointer: fine)").matches;

composerForm.addEventListener("submit", (e) => {
  e.preventDefault();
  send();
  composer.focus();
});

composer.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});

composer.addEventListener("input", () => {
  autosize();
  const now = Date.now();
  if (!joined) return;
  if (composer.value.trim()) {
    if (now - lastTypingSent > TYPING_EVERY_MS) {
      lastTypingSent = now;
      chat.typing(room, { user: me });
    }
  } else if (lastTypingSent && now - lastTypingSent < TYPING_SHOWN_MS) {
    // Cleared without sending: the others' "is typing" goes now, not in a few seconds.
    lastTypingSent = 0;
    chat.stopTyping(room, { user: me });
  }
});

scroller.addEventListener("scroll", () => {
  if (scroller.scrollTop < 60) loadOlder();
  if (isNearBottom()) jump.hidden = true;
});

loadOlderButton.addEventListener("click", loadOlder);
$("offline-retry").addEventListener("click", () => chat.retryNow());
jump.addEventListener("click", () => {
  scrollToBottom();
  composer.focus();
});

// ------------------------------------------------------------------------------- start

showState(connState, "connecting");
nameInput.value = identity.user || prefs.name;
if (identity.user) {
  // The site said who this is (its token): the name is not the visitor's to choose.
  nameInput.readOnly = true;
  nameInput.closest(".field").hidden = true;
}
roomInput.value = prefs.room || "general";
chat.on("state", onState);
chat.on("event", onEvent);
chat.on("disconnect", () => setJoined(false));
if (validName(nameInput.value)) {
  enter(validName(roomInput.value) || "general", validName(nameInput.value));
  if (finePointer) composer.focus();
} else {
  placeholder.textContent = "Pick a name and a room to start chatting.";
  nameInput.focus();
}

// ------------------------------------------------------------------------------- search

// No search card on a server started with SEARCH=false.
if ($("search-form")) setupSearch({
  form: $("search-form"),
  input: $("search-q"),
  list: $("search-results"),
  status: $("search-status"),
  more: $("search-more"),
  room: () => room,
  reveal: (id) => {
    const node = byId.get(id);
    if (!node) return false;
    node.scrollIntoView({ block: "center" });
    node.classList.add("found");
    setTimeout(() => node.classList.remove("found"), 2000);
    return true;
  },
});
