// The /post/{id} page: the server renders the post and its comments; this script joins the
// post's live feed with the highest comment id rendered (JOIN_POST last_id), so comments
// written meanwhile are replayed and new ones arrive live, each shown once and in order. The
// connection is a FastchatClient (fastchat-client.js), which rejoins, resumes and resends by
// itself. A comment the server refuses for good stays marked until edited or discarded,
// never resent.

import { FastchatError, newClientId } from "./fastchat-client.js";
import {
  addChangeActions,
  authHeaders,
  avatar,
  el,
  enhance,
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

const PAGE = 50;

const $ = (id) => document.getElementById(id);
const article = $("post");
const section = $("comments-section");
const list = $("comments");
const empty = $("comments-empty");
const count = $("comment-count");
const connState = $("conn-state");
const olderRow = section.querySelector(".comments__older");
const loadOlderButton = $("load-older");
const form = $("comment-form");
const userInput = $("comment-user");
const textInput = $("comment-text");
const status = $("comment-status");
const submitButton = $("comment-submit");

const postId = Number(article.dataset.postId);
const byId = new Map();
let lastId = 0;
let oldestId = null;
let hasMore = section.dataset.hasMore === "true";
let live = false;
const sending = new Map(); // client_id -> { event, node }: posted, not yet stored

for (const node of list.querySelectorAll(".comment[data-id]")) {
  const id = Number(node.dataset.id);
  const data = node.dataset;
  const text = node.querySelector(".comment__text").textContent;
  decorate(node, {
    id,
    user: data.user,
    comment: text,
    timestamp: data.timestamp,
    edited_at: data.editedAt,
    deleted_at: data.deletedAt,
  });
  byId.set(id, node);
  lastId = Math.max(lastId, id);
  oldestId = oldestId === null ? id : Math.min(oldestId, id);
}

const chat = liveClient(identity.user || validName(prefs.name) || "anonymous");
const overLimit = watchLength(textInput, $("comment-length"), (over) => {
  submitButton.disabled = over;
});

function commentEl(c, pending) {
  const { id, user, comment, timestamp } = c;
  const node = el("li", { class: `comment${pending ? " pending" : ""}` }, [
    avatar(user),
    el("div", { class: "comment__body" }, [
      el("p", { class: "comment__meta" }, [
        el("span", { class: "comment__user", text: user }),
        " ",
        pending ? el("span", { class: "comment__status" }) : timeEl(timestamp),
      ]),
      el("p", { class: "comment__text", text: comment }),
    ]),
  ]);
  if (!pending) {
    node.dataset.id = String(id);
    decorate(node, c);
  }
  return node;
}

/** A confirmed comment's edited mark or tombstone, and the actions the viewer may use. */
function decorate(node, c) {
  showChange(node, "comment__text", c, c.comment);
  const ts = Date.parse(c.timestamp);
  addChangeActions(node, "comment__text", { user: c.user, ts }, changeOf(c.id), (p) =>
    p.catch(() => {}),
  );
}

/** Sends the EDIT_COMMENT or DELETE_COMMENT of comment `id` (a refusal comes as an ERROR
 * event: `onEvent`). */
function changeOf(id) {
  return (kind, text) => (kind === "edit" ? chat.editComment(id, text) : chat.deleteComment(id));
}

function setCount(n) {
  count.textContent = String(n);
  count.dataset.count = String(n);
}

/** Insert a comment at its place by id; false if already shown. */
function addComment(c, fresh = false) {
  if (byId.has(c.id)) return false;
  const node = commentEl(c, false);
  if (fresh) node.classList.add("fresh");
  byId.set(c.id, node);
  let before = list.querySelector(".comment:not([data-id])"); // pending or refused: last
  let cursor = before ? before.previousElementSibling : list.lastElementChild;
  while (cursor !== null && Number(cursor.dataset.id) > c.id) {
    before = cursor;
    cursor = cursor.previousElementSibling;
  }
  list.insertBefore(node, before);
  if (c.id > lastId) lastId = c.id;
  if (oldestId === null || c.id < oldestId) oldestId = c.id;
  empty.hidden = true;
  return true;
}

function pendingText() {
  return chat.connected && live ? "Posting…" : "Queued: posts when back online";
}

function refreshPending() {
  for (const item of sending.values()) {
    item.node.querySelector(".comment__status").textContent = pendingText();
  }
}

/** Mark a refused comment: why, and Edit / Discard. */
function showRefused(item, ev) {
  item.node.classList.replace("pending", "refused");
  item.node.querySelector(".comment__status").textContent = "Not posted";
  item.node.querySelector(".comment__body").append(
    refusalEl(
      ev,
      "posted",
      () => {
        restoreText(textInput, item.event.comment);
        item.node.remove();
      },
      () => {
        item.node.remove();
        textInput.focus();
      },
    ),
  );
}

// ------------------------------------------------------------------------------- connection

/** JOIN_POST with the newest comment shown (the client rejoins by itself after a reconnect,
 * from the newest it saw); not answered in time: again. */
function join() {
  const user = identity.user || validName(prefs.name) || "anonymous";
  chat.joinPost(postId, { user, lastId }).catch((err) => {
    if (err instanceof FastchatError && err.code !== "timeout") return; // an ERROR event
    setTimeout(() => {
      if (!live) join();
    }, 1000);
  });
}

function onState({ state }) {
  showState(connState, state);
  if (state !== "connected") {
    live = false;
    section.dataset.live = "false";
  }
  refreshPending();
}

/** The comment `clientId` is stored: its pending item gives way to it. */
function stored(clientId) {
  const item = sending.get(clientId);
  if (item === undefined) return;
  sending.delete(clientId);
  item.node.remove();
}

function onEvent(ev) {
  switch (ev.type) {
    case "POST_COMMENT": {
      stored(ev.client_id);
      if (Number(ev.post_id) !== postId) return;
      if (addComment(ev, true)) setCount(Number(count.dataset.count || count.textContent) + 1);
      return;
    }
    case "COMMENT_EDITED":
    case "COMMENT_DELETED": {
      if (Number(ev.post_id) !== postId) return;
      const node = byId.get(ev.id);
      if (node) showChange(node, "comment__text", ev, ev.comment);
      return;
    }
    case "POST_JOINED": {
      if (Number(ev.post_id) !== postId) return;
      live = true;
      section.dataset.live = "true";
      refreshPending();
      return;
    }
    case "ERROR": {
      // A comment's refusal (client_id) is its promise's (`submit`); a read's too.
      if (ev.client_id != null || ev.request_id != null) return;
      status.textContent = ev.message || ev.code;
      status.classList.add("error");
      return;
    }
    default:
      return;
  }
}

// ------------------------------------------------------------------------------- input

function submit() {
  const user = validName(userInput.value);
  const text = textInput.value;
  status.classList.remove("error");
  if (!user) {
    status.textContent = "Enter your name (1-64 characters).";
    status.classList.add("error");
    userInput.focus();
    return;
  }
  if (!text.trim()) {
    status.textContent = "Write a comment first.";
    status.classList.add("error");
    textInput.focus();
    return;
  }
  if (overLimit()) {
    status.textContent = "Your comment is over the limit: shorten it first.";
    status.classList.add("error");
    textInput.focus();
    return;
  }
  if (!identity.user) prefs.name = user;
  userInput.value = user;
  const event = {
    type: "POST_COMMENT",
    post_id: String(postId),
    user,
    comment: text,
    client_id: newClientId(),
  };
  const node = commentEl({ user, comment: text }, true);
  node.dataset.clientId = event.client_id;
  list.append(node);
  empty.hidden = true;
  const item = { event, node };
  sending.set(event.client_id, item);
  // Stored: the event (above) has usually shown it already; an answer to a comment repeated
  // after a reconnect may come as no event (the replay showed it). Refused for good: marked.
  chat.comment(postId, text, { user, clientId: event.client_id }).then(
    (c) => {
      stored(c.client_id);
      if (addComment(c, true)) setCount(Number(count.dataset.count || count.textContent) + 1);
    },
    (err) => {
      if (!(err instanceof FastchatError) || !sending.has(event.client_id)) return;
      sending.delete(event.client_id);
      showRefused(item, err);
    },
  );
  refreshPending();
  status.textContent = "";
  textInput.value = "";
  overLimit();
  textInput.focus();
}

async function loadOlder() {
  if (!hasMore || oldestId === null) return;
  loadOlderButton.disabled = true;
  try {
    const query = new URLSearchParams({ before: String(oldestId), limit: String(PAGE) });
    const response = await fetch(`/api/v1/posts/${postId}/comments?${query}`, {
      headers: authHeaders(),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    for (const c of body.comments) addComment(c);
    hasMore = body.has_more;
    olderRow.hidden = !hasMore;
  } catch {
    status.textContent = "Could not load earlier comments. Try again.";
    status.classList.add("error");
  } finally {
    loadOlderButton.disabled = false;
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  submit();
});

textInput.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    submit();
  }
});

loadOlderButton.addEventListener("click", loadOlder);
$("offline-retry").addEventListener("click", () => chat.retryNow());

enhance();
userInput.value = identity.user || prefs.name;
if (identity.user) {
  userInput.readOnly = true;
  userInput.closest(".field").hidden = true;
}
showState(connState, chat.state);
chat.on("state", onState);
chat.on("event", onEvent);
join();
