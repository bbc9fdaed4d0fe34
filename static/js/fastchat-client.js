// fastchat-client.js: a client for fastchat's WebSocket protocol (docs/PROTOCOL.md) for
// browsers (and Node 22+, or older with the `WebSocket` option), one ES module with no
// dependency and no build step, served at /static/js/fastchat-client.js. It mirrors the
// Python client (src/fastchat/client.py).
//
//   import { FastchatClient } from "/static/js/fastchat-client.js";
//   const chat = await new FastchatClient("ws://localhost:8081/ws", { user: "alice" }).connect();
//   chat.on("CHAT_MESSAGE", (m) => console.log(m.id, m.user, m.message));
//   await chat.join("general");                     // the ROOM_JOINED
//   const msg = await chat.send("general", "Hi!");  // the stored CHAT_MESSAGE (id, timestamp)
//
// What it guarantees, so pages need not:
//
// - Idempotent sends. Every send() / comment() carries a client_id (fresh, or the caller's);
//   it resolves with the stored event (the server's echo is the acknowledgement) and is sent
//   again, with the same client_id, after every reconnect until acknowledged or refused. The
//   server stores it once. A send to a room whose join is on its way waits for the join's
//   answer (it would be refused as not_joined).
// - Reconnect with full-jitter exponential backoff: random(0, min(backoffCap, backoffBase *
//   2^attempt)) ms before each attempt.
// - A dead connection is noticed: after `pingInterval` ms (25 s) without a frame the client
//   sends PING; no answer within `timeout` ms and it reconnects, rather than wait for a close
//   that a connection dropped silently (a laptop woken from sleep) may never deliver.
// - Gap-free resume. After a reconnect every room and post is joined again with `last_id` (and
//   `last_change`) set to the newest seen there; the server replays what was missed. A message
//   or comment whose id is not above the last one seen is not emitted again: each reaches the
//   listeners once, in id order.
//
// API (every method that awaits an answer rejects with FastchatError (`code`, as the
// server's ERROR) or ClientClosedError; answers are awaited at most `timeout` ms, except
// sends, which wait for as long as it takes):
//
//   new FastchatClient(url?, { token, user, backoffBase, backoffCap, timeout, pingInterval,
//                              resendAfter, offlineAfter, WebSocket })
//     resendAfter: a send unanswered this long (8,000 ms) on a live connection is written
//     again (safe by client_id); offlineAfter: failed attempts in a row (3) before the state
//     says "offline" rather than "reconnecting".
//     url: ws://HOST:PORT/ws (the HTTP port) or ws://HOST:WS_PORT/ws (the fast port); in a
//     page the default is this page's host; token: sent as ?token= on every handshake (the
//     connect then asks the server the token's name with AUTH: `user` becomes it).
//   connect() -> Promise<this>        the first attempt's failure rejects; later drops reconnect
//   start() -> this                   connect in the background; never rejects (a page that
//                                     loads while the server is away comes up when it does)
//   close()                           closes with 1000; unacknowledged sends reject
//   join(room, { user, lastId })      -> ROOM_JOINED; rejoined after every reconnect
//   joinPost(postId, { user, lastId }) -> POST_JOINED
//   leave(room) / leavePost(postId)   -> ROOM_LEFT / POST_LEFT; not rejoined any more
//   send(room, text, { user, clientId })       -> the stored CHAT_MESSAGE
//   comment(postId, text, { user, clientId })  -> the stored POST_COMMENT
//   typing(room, { user })            TYPING (dropped while offline; the server relays 1/s)
//   stopTyping(room, { user })        TYPING_STOPPED (the text was cleared without sending)
//   history({ room | postId, limit, before, after, since, until }) -> the HISTORY page;
//     page.next is the next page's cursor: history({ room, ...page.next })
//   membersPage(room, { after, limit }) -> a MEMBERS page; members(room) -> every name
//     (async iterator, paged)
//   auth(token) -> AUTHENTICATED; later handshakes carry that token (or set chat.token: a
//     close 4001, "token expired", comes as a "disconnect"; the next attempt uses the new one)
//   retryNow()                        skip the backoff (done by itself on the "online" event)
//   editMessage(id, text) / deleteMessage(id) / editComment(id, text) / deleteComment(id)
//     -> MESSAGE_EDITED / MESSAGE_DELETED / COMMENT_EDITED / COMMENT_DELETED
//   on(type, fn) -> off function;  off(type, fn);  or addEventListener(type, e => e.detail)
//
// Events: every server event by its `type` (CHAT_MESSAGE, POST_COMMENT, ROOM_JOINED,
// USER_JOINED, USER_LEFT, PRESENCE, TYPING, MESSAGE_EDITED, HISTORY, MEMBERS, ERROR, ...),
// and "event" for each of them; then the client's own, in lower case: "state" ({ state }:
// "connecting" | "connected" | "reconnecting" | "offline" | "closed"), "disconnect" ({ code, reason }),
// "reconnect" ({ attempt, rooms }: every room and post rejoined). A listener gets the
// event's object (on) or a CustomEvent with it as `detail` (addEventListener).

const RETRYABLE_LATER_MS = 1000; // rate_limited / store_unavailable: the same send again after

export class FastchatError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "FastchatError";
    this.code = code;
  }
}

export class ClientClosedError extends Error {
  constructor(message = "the client was closed") {
    super(message);
    this.name = "ClientClosedError";
  }
}

/** A random client_id; crypto.randomUUID needs a secure context, getRandomValues does not. */
export function newClientId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID().replaceAll("-", "");
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function defaultUrl() {
  if (typeof location === "undefined") return "ws://localhost:8080/ws";
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

function withToken(url, token) {
  if (!token) return url;
  const u = new URL(url);
  u.searchParams.set("token", token);
  return u.toString();
}

const postKey = (postId) => `p:${Number(postId)}`;

/** A promise with its settle functions, settled once (later calls are ignored). */
function deferred() {
  let resolve;
  let reject;
  const d = { done: false };
  d.promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  d.resolve = (v) => {
    if (!d.done) (d.done = true), resolve(v);
  };
  d.reject = (e) => {
    if (!d.done) (d.done = true), reject(e);
  };
  return d;
}

/** Waits for `d` at most `ms`; on timeout `d` is rejected too (its waiter is forgotten). */
function within(d, ms, what) {
  const timer = setTimeout(
    () => d.reject(new FastchatError("timeout", `no answer to ${what} within ${ms} ms`)),
    ms,
  );
  return d.promise.finally(() => clearTimeout(timer));
}

export class FastchatClient extends EventTarget {
  constructor(url = defaultUrl(), options = {}) {
    super();
    const {
      token = null,
      user = "anonymous",
      backoffBase = 100,
      backoffCap = 10000,
      timeout = 10000,
      pingInterval = 25000,
      resendAfter = 8000,
      offlineAfter = 3,
      WebSocket: WS = globalThis.WebSocket,
    } = options;
    this.baseUrl = url;
    this.token = token;
    this.user = user; // the default name of sends and joins
    this.backoffBase = backoffBase;
    this.backoffCap = backoffCap;
    this.timeout = timeout;
    this.pingInterval = pingInterval;
    this.resendAfter = resendAfter;
    this.offlineAfter = offlineAfter;
    this.reconnects = 0;
    this.state = "closed";
    this._WS = WS;
    this._ws = null;
    this._ready = false; // connected, and every room rejoined
    this._closing = false;
    this._timer = null;
    this._attempt = 0;
    this._resuming = null; // the rejoins of a reconnect under way
    this._onOnline = null;
    this._readyWaiters = [];
    this._scopes = new Map(); // "r:<room>" / "p:<post_id>" -> { user, lastId, lastChange }
    this._pending = new Map(); // client_id -> { frame, key, d }, in send order
    this._requests = new Map(); // request_id -> { frame, d }
    // Joins and leaves awaiting their answer, by scope key; and every awaited answer in send
    // order, so an ERROR that names no client_id fails the oldest (the server answers in
    // order, reads aside: PROTOCOL.md, "Answers that read the database").
    this._answers = new Map();
    this._order = [];
    this._changes = []; // edits and deletions awaiting their change event: { kind, id, d }
    this._conn = 0; // which connection this is (1, 2, ...): what was sent or joined on it
    this._resender = null;
    this._everConnected = false;
    this._heard = 0; // when the open connection last received a frame (performance.now())
    this._pingSent = 0; // when an unanswered PING went out (0: none out)
    this._liveness = null;
  }

  get url() {
    return withToken(this.baseUrl, this.token);
  }

  get connected() {
    return this._ready;
  }

  // -- events ----------------------------------------------------------------------------

  /** Calls `fn(event)` for every event of `type`; returns the function that stops it. */
  on(type, fn) {
    const wrapped = (e) => fn(e.detail);
    (this._wrapped ??= new Map()).set(fn, wrapped);
    this.addEventListener(type, wrapped);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const wrapped = this._wrapped?.get(fn);
    if (wrapped) this.removeEventListener(type, wrapped);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this._emit("state", { state });
  }

  // -- lifecycle ---------------------------------------------------------------------------

  /** Connect; rejects if the first attempt fails. Later drops reconnect by themselves. */
  async connect() {
    this._closing = false;
    this._setState("connecting");
    this._listen();
    try {
      await this._open();
    } catch (err) {
      this._setState("closed");
      throw err;
    }
    this._setReady();
    this._everConnected = true;
    if (this.token) {
      // With a token the name is the token's, and `user` fields must say it: ask the server
      // which it is (AUTHENTICATED's `user`) rather than guess it from the token's claims.
      // A server without tokens answers `unauthorized`: nothing to learn.
      await this.auth(this.token).catch(() => {});
    }
    return this;
  }

  /** Connect in the background and stay connected: unlike connect(), a first attempt that
   * fails is retried as a later drop is (state "reconnecting", then "offline"), and nothing
   * rejects. For a page that must come up whether or not the server is there yet: joins and
   * sends made meanwhile go out once it is. Returns the client. */
  start() {
    this._closing = false;
    this._setState("connecting");
    this._listen();
    this._attempt = 0;
    this._reconnect();
    return this;
  }

  /** The browser's hints (none outside a page): back online, or a tab shown again (phones
   * freeze background tabs), skip the backoff; offline, say so at once. */
  _listen() {
    if (this.resendAfter && this._resender === null) {
      this._resender = setInterval(() => this._resendStale(), Math.max(50, this.resendAfter / 2));
    }
    if (this._onOnline || typeof window === "undefined") return;
    this._onOnline = () => this.retryNow();
    this._onOffline = () => {
      if (!this._ready && !this._closing) this._setState("offline");
    };
    this._onVisible = () => {
      if (document.visibilityState === "visible") this.retryNow();
    };
    window.addEventListener("online", this._onOnline);
    window.addEventListener("offline", this._onOffline);
    document.addEventListener("visibilitychange", this._onVisible);
  }

  /** Close (1000); unacknowledged sends and awaited answers reject with ClientClosedError. */
  close() {
    if (this._closing) return;
    this._closing = true;
    clearTimeout(this._timer);
    this._timer = null;
    if (this._onOnline) {
      window.removeEventListener("online", this._onOnline);
      window.removeEventListener("offline", this._onOffline);
      document.removeEventListener("visibilitychange", this._onVisible);
    }
    this._onOnline = null;
    clearInterval(this._resender);
    this._resender = null;
    clearInterval(this._liveness);
    this._liveness = null;
    const ws = this._ws;
    this._ws = null;
    this._ready = false;
    if (ws) ws.close(1000);
    const closed = new ClientClosedError();
    for (const p of this._pending.values()) p.d.reject(closed);
    for (const r of this._requests.values()) r.d.reject(closed);
    for (const d of this._order) d.reject(closed);
    for (const c of this._changes) c.d.reject(closed);
    for (const w of this._readyWaiters) w.reject(closed);
    this._pending.clear();
    this._requests.clear();
    this._order = [];
    this._changes = [];
    this._readyWaiters = [];
    this._answers.clear();
    this._setState("closed");
  }

  // -- rooms and posts ---------------------------------------------------------------------

  /** Join `room` (as `user`, default the client's); with `lastId`, replay what came after
   * it. Resolves with the ROOM_JOINED. The room is rejoined after every reconnect. */
  async join(room, { user, lastId } = {}) {
    const key = `r:${room}`;
    return this._join(key, user, lastId, { room });
  }

  /** View a post's comments live (JOIN_POST); rejoined after every reconnect. */
  async joinPost(postId, { user, lastId } = {}) {
    return this._join(postKey(postId), user, lastId, { postId: Number(postId) });
  }

  async _join(key, user, lastId, where) {
    let scope = this._scopes.get(key);
    // Nothing new to ask of a join already made (the same name, nothing older to replay:
    // what the client saw is never emitted twice anyway).
    let covered = scope !== undefined && (!user || user === scope.user);
    if (scope === undefined) {
      scope = { user: user || this.user, lastId: lastId ?? null, lastChange: null };
      this._scopes.set(key, scope);
      covered = true; // a join made while offline is sent by the connection's rejoins
    } else {
      scope.user = user || scope.user;
      if (lastId != null && (scope.lastId == null || lastId > scope.lastId)) {
        scope.lastId = lastId;
      }
    }
    let joined;
    try {
      await this._waitReady();
      // Joined on this connection already (by its rejoins, or an earlier call): that answer.
      if (covered && scope.joinedOn === this._conn && scope.joined) return scope.joined;
      joined = await this._ask(key, this._joinFrame(key, scope));
    } catch (err) {
      // Refused: forgotten. Not answered in time (or offline): still wanted, so rejoined
      // by the next reconnect; the caller may also try again.
      if (err instanceof FastchatError && err.code !== "timeout") this._scopes.delete(key);
      throw err;
    }
    await this._baseline(scope, where);
    return joined;
  }

  async leave(room) {
    const key = `r:${room}`;
    this._scopes.delete(key);
    return this._ask(key, { type: "LEAVE_ROOM", room });
  }

  async leavePost(postId) {
    const key = postKey(postId);
    this._scopes.delete(key);
    return this._ask(key, { type: "LEAVE_POST", post_id: Number(postId) });
  }

  /** A first join with nothing seen yet: learn the newest stored id, so a reconnect resumes
   * from it (without one, what came during the gap would be lost). */
  async _baseline(scope, where) {
    if (scope.lastId != null) return;
    const page = await this.history({ ...where, limit: 1 });
    const items = page.messages ?? page.comments ?? [];
    const newest = items.length ? items[items.length - 1].id : 0;
    if (scope.lastId == null || newest > scope.lastId) scope.lastId = newest;
  }

  // -- sending -----------------------------------------------------------------------------

  /** Send a message to a joined room; resolves with the stored CHAT_MESSAGE. `clientId`
   * (default: a fresh one) is the idempotency key: a send repeated with it is stored once. */
  send(room, text, { user, clientId } = {}) {
    const key = `r:${room}`;
    const name = user || this._scopes.get(key)?.user || this.user;
    const client_id = clientId || newClientId();
    const event = { type: "CHAT_MESSAGE", room, user: name, message: text, client_id };
    return this._sendPending(client_id, event, key);
  }

  /** Comment on a post (POST_COMMENT); resolves with the stored comment. */
  comment(postId, text, { user, clientId } = {}) {
    const key = postKey(postId);
    const name = user || this._scopes.get(key)?.user || this.user;
    const client_id = clientId || newClientId();
    const event = {
      type: "POST_COMMENT",
      post_id: Number(postId),
      user: name,
      comment: text,
      client_id,
    };
    return this._sendPending(client_id, event, key);
  }

  /** Tell the room's others this user is typing; never stored, dropped while offline. */
  typing(room, { user } = {}) {
    const name = user || this._scopes.get(`r:${room}`)?.user || this.user;
    this._write({ type: "TYPING", room, user: name });
  }

  /** Tell them this user stopped typing without sending (cleared the text): their "is
   * typing" goes at once. Not needed after a send: the message ends it. */
  stopTyping(room, { user } = {}) {
    const name = user || this._scopes.get(`r:${room}`)?.user || this.user;
    this._write({ type: "TYPING_STOPPED", room, user: name });
  }

  /** Unacknowledged sends, oldest first: [{ clientId, event }] (e.g. to show them pending). */
  get pending() {
    return Array.from(this._pending, ([clientId, p]) => ({ clientId, event: p.event }));
  }

  _sendPending(clientId, event, key) {
    const already = this._pending.get(clientId);
    if (already) return already.d.promise; // the same send, still in flight: the same answer
    const d = deferred();
    const frame = JSON.stringify(event);
    const pending = { frame, event, key, d, sentOn: 0, sentAt: 0 };
    this._pending.set(clientId, pending);
    if (this._ready && this._joinedNow(key)) this._writePending(pending);
    // No timeout: it is sent again after each reconnect until acknowledged or refused.
    return d.promise;
  }

  /** May a send to `key` go out now? Not while its join is on its way (the server would
   * answer not_joined): the join's answer sends it. A scope never joined: the server says. */
  _joinedNow(key) {
    const scope = this._scopes.get(key);
    return scope === undefined || scope.joinedOn === this._conn;
  }

  _writePending(pending) {
    pending.sentOn = this._conn;
    pending.sentAt = performance.now();
    this._write(pending.frame);
  }

  /** Sends unanswered for `resendAfter` ms on a connection that looks fine are written
   * again (safe by client_id): an acknowledgement can be lost where the socket is not. */
  _resendStale() {
    if (!this._ready || !this.resendAfter) return;
    const now = performance.now();
    for (const p of this._pending.values()) {
      if (p.sentOn === this._conn && now - p.sentAt >= this.resendAfter) this._writePending(p);
    }
  }

  // -- edits and deletions (only on a server with tokens) ----------------------------------

  editMessage(id, text) {
    return this._change("MESSAGE_EDITED", { type: "EDIT_MESSAGE", id, message: text });
  }

  deleteMessage(id) {
    return this._change("MESSAGE_DELETED", { type: "DELETE_MESSAGE", id });
  }

  editComment(id, text) {
    return this._change("COMMENT_EDITED", { type: "EDIT_COMMENT", id, comment: text });
  }

  deleteComment(id) {
    return this._change("COMMENT_DELETED", { type: "DELETE_COMMENT", id });
  }

  async _change(kind, event) {
    await this._waitReady();
    const d = deferred();
    const entry = { kind, id: event.id, d };
    this._changes.push(entry);
    this._order.push(d);
    this._write(event);
    try {
      return await within(d, this.timeout, event.type);
    } finally {
      this._changes = this._changes.filter((c) => c !== entry);
      this._forget(d);
    }
  }

  /** AUTH with a (fresh) token; resolves with AUTHENTICATED. Later handshakes carry it. */
  async auth(token) {
    await this._waitReady();
    const d = deferred();
    this._authWaiter = d;
    this._order.push(d);
    this._write({ type: "AUTH", token });
    try {
      const answer = await within(d, this.timeout, "AUTH");
      this.token = token;
      return answer;
    } finally {
      this._forget(d);
    }
  }

  // -- reads -------------------------------------------------------------------------------

  /** A page of a room's messages (or, with `postId`, a post's comments), oldest first;
   * `page.next` is the cursor of the next page in the same direction. */
  history({ room, postId, limit = 50, before, after, since, until } = {}) {
    const request = { type: "HISTORY", limit };
    if (room != null) request.room = room;
    if (postId != null) request.post_id = Number(postId);
    for (const [name, value] of Object.entries({ before, after, since, until })) {
      if (value != null) request[name] = value;
    }
    return this._request(request);
  }

  /** One MEMBERS page of a joined room: { members, users, next? }. */
  membersPage(room, { after, limit = 100 } = {}) {
    const request = { type: "MEMBERS", room, limit };
    if (after != null) request.after = after;
    return this._request(request);
  }

  /** Every name in a joined room, in name order, a MEMBERS page at a time. */
  async *members(room, { pageSize = 100 } = {}) {
    let after;
    for (;;) {
      const page = await this.membersPage(room, { after, limit: pageSize });
      yield* page.users;
      if (page.next == null) return;
      after = page.next;
    }
  }

  /** A request answered by request_id (HISTORY, MEMBERS); sent again after a reconnect. */
  async _request(request) {
    if (this._closing) throw new ClientClosedError();
    const requestId = newClientId();
    request.request_id = requestId;
    const frame = JSON.stringify(request);
    const d = deferred();
    this._requests.set(requestId, { frame, d });
    this._order.push(d);
    if (this._ready) this._write(frame);
    try {
      return await within(d, this.timeout, request.type);
    } finally {
      this._requests.delete(requestId);
      this._forget(d);
    }
  }

  /** Send a join or leave and await its answer (or refusal). */
  async _ask(key, event) {
    await this._waitReady();
    const d = this._expect(key);
    this._write(event);
    try {
      return await within(d, this.timeout, event.type);
    } finally {
      this._forget(d);
    }
  }

  _expect(key) {
    const d = deferred();
    if (!this._answers.has(key)) this._answers.set(key, []);
    this._answers.get(key).push(d);
    this._order.push(d);
    return d;
  }

  _forget(d) {
    this._order = this._order.filter((x) => x !== d);
    for (const [key, waiters] of this._answers) {
      const left = waiters.filter((x) => x !== d);
      if (left.length) this._answers.set(key, left);
      else this._answers.delete(key);
    }
  }

  _waitReady() {
    if (this._closing) return Promise.reject(new ClientClosedError());
    if (this._ready) return Promise.resolve();
    const d = deferred();
    this._readyWaiters.push(d);
    return within(d, this.timeout, "the connection");
  }

  _setReady() {
    this._ready = true;
    this._setState("connected");
    for (const w of this._readyWaiters.splice(0)) w.resolve();
  }

  _write(frame) {
    const ws = this._ws;
    if (ws && ws.readyState === 1) {
      ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
    }
  }

  // -- the connection ----------------------------------------------------------------------

  /** Open one WebSocket; resolves once it is open, rejects if it closes first. */
  _open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new this._WS(this.url);
      } catch (err) {
        reject(err);
        return;
      }
      this._ws = ws;
      let opened = false;
      ws.onopen = () => {
        if (this._ws !== ws) return;
        opened = true;
        this._conn += 1;
        this._watch(ws);
        resolve();
      };
      ws.onmessage = (msg) => {
        if (this._ws !== ws) return;
        this._heard = performance.now();
        this._pingSent = 0; // any frame says the connection is alive, a PONG or not
        this._onText(msg.data);
      };
      // An error is always followed by close; close is where we retry.
      ws.onclose = (e) => {
        if (!opened) {
          // Also when dropped meanwhile (close()): the attempt that opened it must end.
          if (this._ws === ws) this._ws = null;
          reject(new ClientClosedError(`cannot connect to ${this.baseUrl} (${e.code})`));
          return;
        }
        if (this._ws !== ws) return;
        this._ws = null;
        this._onDisconnected(e);
      };
    });
  }

  /** Notice a dead connection: a browser answers the server's WebSocket pings without
   * telling the page, and a connection dropped without a close (a laptop woken from sleep,
   * a network gone) can look open for minutes. After `pingInterval` ms without a frame, a
   * PING (the server answers PONG); nothing back within `timeout` ms: the connection is
   * given up as lost and a reconnect begins. 0 turns this off. */
  _watch(ws) {
    clearInterval(this._liveness);
    this._liveness = null;
    if (!this.pingInterval) return;
    this._heard = performance.now();
    this._pingSent = 0;
    const every = Math.max(50, Math.min(this.pingInterval, this.timeout) / 4);
    this._liveness = setInterval(() => {
      if (this._ws !== ws) {
        clearInterval(this._liveness);
        this._liveness = null;
        return;
      }
      const now = performance.now();
      if (this._pingSent && now - this._pingSent >= this.timeout) {
        this._lose(ws, 4000, "no answer to PING");
      } else if (!this._pingSent && now - this._heard >= this.pingInterval) {
        this._pingSent = now;
        this._write({ type: "PING" });
      }
    }, every);
  }

  /** Give up on `ws` now, as if it had closed with `code` (its own close may come minutes
   * later, or never). */
  _lose(ws, code, reason) {
    clearInterval(this._liveness);
    this._liveness = null;
    if (this._ws !== ws) return;
    this._ws = null;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
    this._onDisconnected({ code, reason });
  }

  _onDisconnected(e) {
    clearInterval(this._liveness);
    this._liveness = null;
    this._ready = false;
    this._emit("disconnect", { code: e.code, reason: e.reason });
    // Leaves awaited on the lost connection will not be answered: they fail. Joins are
    // answered by the resume's rejoin; reads and sends are sent again.
    const lost = new ClientClosedError("connection lost");
    for (const [key, waiters] of this._answers) {
      if (!this._scopes.has(key)) for (const d of waiters) d.reject(lost);
    }
    if (this._closing) return;
    if (this._resuming) {
      // Lost during a rejoin: that attempt fails, and its failure schedules the next one.
      this._resuming.reject(lost);
      return;
    }
    this._setState("reconnecting");
    this._attempt = 0;
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    const ceiling = Math.min(this.backoffCap, this.backoffBase * 2 ** this._attempt);
    this._attempt += 1;
    // Offline: the browser says so, or offlineAfter attempts in a row have failed.
    const browserOffline = typeof navigator !== "undefined" && navigator.onLine === false;
    this._setState(
      browserOffline || this._attempt > this.offlineAfter ? "offline" : "reconnecting",
    );
    this._timer = setTimeout(() => {
      this._timer = null;
      this._reconnect();
    }, Math.random() * ceiling);
  }

  /** Skip the rest of the backoff (the browser is back online, a "retry now" button). */
  retryNow() {
    if (this._timer === null || this._closing) return;
    clearTimeout(this._timer);
    this._timer = null;
    this._reconnect();
  }

  /** One attempt: connect, rejoin every room and post from its last id, then resend every
   * unacknowledged send and unanswered read. Any failure: drop it, back off, try again. */
  async _reconnect() {
    if (this._closing) return;
    try {
      await this._open();
      await this._resume();
    } catch {
      if (this._closing) return;
      const ws = this._ws;
      this._ws = null;
      if (ws) ws.close();
      this._scheduleReconnect();
      return;
    }
    if (!this._everConnected) {
      // start()'s first connection: as connect() does, learn the token's name.
      this._everConnected = true;
      if (this.token) await this.auth(this.token).catch(() => {});
      return;
    }
    this.reconnects += 1;
    this._emit("reconnect", { attempt: this._attempt, rooms: this._scopes.size });
  }

  async _resume() {
    const answers = [];
    for (const [key, scope] of this._scopes) {
      const d = this._expect(key);
      answers.push(d);
      this._write(this._joinFrame(key, scope));
    }
    const all = deferred();
    Promise.all(answers.map((d) => d.promise)).then(all.resolve, all.reject);
    this._resuming = all;
    try {
      // A join with last_id is done only once its replay was read: sends wait for it.
      await within(all, this.timeout, "the rejoins");
    } finally {
      this._resuming = null;
      for (const d of answers) this._forget(d);
    }
    this._setReady();
    for (const p of this._pending.values()) {
      if (p.sentOn !== this._conn && this._joinedNow(p.key)) this._writePending(p);
    }
    for (const r of this._requests.values()) this._write(r.frame);
  }

  _joinFrame(key, scope) {
    const name = key.slice(2);
    const event =
      key[0] === "r" ? { type: "JOIN_ROOM", room: name } : { type: "JOIN_POST", post_id: +name };
    event.user = scope.user;
    if (scope.lastId != null) {
      event.last_id = scope.lastId;
      if (scope.lastChange != null) event.last_change = scope.lastChange;
    }
    return event;
  }

  // -- incoming events ---------------------------------------------------------------------

  _onText(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (!event || typeof event.type !== "string") return;
    switch (event.type) {
      case "CHAT_MESSAGE":
        if (this._onStored(`r:${event.room}`, event)) return;
        break;
      case "POST_COMMENT":
        if (this._onStored(postKey(event.post_id), event)) return;
        break;
      case "MESSAGE_EDITED":
      case "MESSAGE_DELETED":
        this._onChange(`r:${event.room}`, event);
        break;
      case "COMMENT_EDITED":
      case "COMMENT_DELETED":
        this._onChange(postKey(event.post_id), event);
        break;
      case "ROOM_JOINED":
        this._noteChange(`r:${event.room}`, event.last_change);
        this._joined(`r:${event.room}`, event);
        this._answer(`r:${event.room}`, event);
        break;
      case "ROOM_LEFT":
        this._answer(`r:${event.room}`, event);
        break;
      case "POST_JOINED":
        this._noteChange(postKey(event.post_id), event.last_change);
        this._joined(postKey(event.post_id), event);
        this._answer(postKey(event.post_id), event);
        break;
      case "POST_LEFT":
        this._answer(postKey(event.post_id), event);
        break;
      case "HISTORY":
        // PROTOCOL.md: `next` is null on the last page; the server leaves it out instead.
        event.next ??= null;
        this._requests.get(event.request_id ?? "")?.d.resolve(event);
        break;
      case "MEMBERS":
        this._requests.get(event.request_id ?? "")?.d.resolve(event);
        break;
      case "AUTHENTICATED":
        // The name shown for this token: every send and join goes under it from now on.
        this.user = event.user;
        for (const scope of this._scopes.values()) scope.user = event.user;
        this._authWaiter?.resolve(event);
        break;
      case "ERROR":
        this._onError(event);
        break;
      default:
        break;
    }
    this._emit(event.type, event);
    this._emit("event", event);
  }

  /** Acknowledge a pending send; true if the event was already seen (not emitted). */
  _onStored(key, event) {
    if (event.client_id != null) {
      const pending = this._pending.get(event.client_id);
      if (pending && pending.key === key) {
        this._pending.delete(event.client_id);
        pending.d.resolve(event);
      }
    }
    const scope = this._scopes.get(key);
    if (scope === undefined) return false;
    if (scope.lastId != null && event.id <= scope.lastId) return true; // a replay seen before
    scope.lastId = event.id;
    return false;
  }

  _onChange(key, event) {
    this._noteChange(key, event.change);
    const waiter = this._changes.find((c) => c.kind === event.type && c.id === event.id);
    waiter?.d.resolve(event);
  }

  /** Note an edit or deletion (or a join's mark): the next resume's `last_change`. Every
   * change event is emitted: each carries its item's whole state. */
  _noteChange(key, change) {
    const scope = this._scopes.get(key);
    if (scope && change != null && (scope.lastChange == null || change > scope.lastChange)) {
      scope.lastChange = change;
    }
  }

  /** `key` is joined on this connection: the sends that waited for it go out (a
   * reconnect's resume sends them once every rejoin is in). */
  _joined(key, event) {
    const scope = this._scopes.get(key);
    if (scope === undefined) return;
    scope.joinedOn = this._conn;
    scope.joined = event;
    if (!this._ready) return;
    for (const p of this._pending.values()) {
      if (p.key === key && p.sentOn !== this._conn) this._writePending(p);
    }
  }

  _answer(key, event) {
    // Every waiter of that scope: a join awaited by the caller and by a resume alike.
    const waiters = this._answers.get(key) ?? [];
    this._answers.delete(key);
    for (const d of waiters) d.resolve(event);
  }

  _onError(event) {
    const error = new FastchatError(event.code, event.message);
    if (event.client_id != null) {
      const pending = this._pending.get(event.client_id);
      if (!pending) return;
      if (event.code === "rate_limited" || event.code === "store_unavailable") {
        // Dropped, or the database could not take it now: the same send again in a moment
        // (safe: the server stores a client_id once).
        setTimeout(() => this._retry(event.client_id), RETRYABLE_LATER_MS);
        return;
      }
      this._pending.delete(event.client_id);
      pending.d.reject(error);
      return;
    }
    // The ERROR names the request it refuses (a server since 0.2.0): that one fails, or
    // nothing (a TYPING nobody awaits); not the oldest request, as below.
    if (event.request_id != null) {
      this._requests.get(event.request_id)?.d.reject(error);
      return;
    }
    if (event.id != null) {
      // An edit or deletion of item `id` (a message's and a comment's id may coincide: the
      // oldest of them in flight).
      this._changes.find((c) => c.id === event.id)?.d.reject(error);
      return;
    }
    if (event.room != null || event.post_id != null) {
      const key = event.room != null ? `r:${event.room}` : postKey(event.post_id);
      const waiters = this._answers.get(key) ?? [];
      this._answers.delete(key);
      for (const d of waiters) d.reject(error);
      return;
    }
    if (event.code === "post_not_found" && this._failOldestComment(error)) return;
    if (
      event.code === "store_unavailable" &&
      !String(event.message).includes("not joined") &&
      this._pending.size
    ) {
      // A write the database refused names no client_id: send every pending one again after
      // a pause (safe: the server dedupes by client_id).
      setTimeout(() => this._retry(null), RETRYABLE_LATER_MS);
      return;
    }
    while (this._order.length) {
      const d = this._order.shift();
      if (!d.done) {
        d.reject(error);
        return;
      }
    }
  }

  _failOldestComment(error) {
    for (const [clientId, pending] of this._pending) {
      if (pending.key.startsWith("p:")) {
        this._pending.delete(clientId);
        pending.d.reject(error);
        return true;
      }
    }
    return false;
  }

  _retry(clientId) {
    if (!this._ready) return; // the resume sends them all
    const targets = clientId != null ? [clientId] : Array.from(this._pending.keys());
    for (const id of targets) {
      const pending = this._pending.get(id);
      if (pending && this._joinedNow(pending.key)) this._writePending(pending);
    }
  }
}

/** `await connect(url, options)`: a connected FastchatClient. */
export function connect(url, options) {
  return new FastchatClient(url, options).connect();
}
