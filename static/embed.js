// fastchat comments for any site, served at /embed.js:
//
//   <div data-fastchat-thread="my-article"></div>
//   <script src="https://chat.example.com/embed.js" async></script>
//
// Each element with `data-fastchat-thread` gets that thread's comments, live, and a form to
// comment, in a Shadow DOM box: the site's styles do not leak in, its font and colour are
// inherited, and a few CSS variables theme it (set them on the element or any ancestor):
//
//   --fastchat-accent (links, button)  --fastchat-border  --fastchat-muted (names, times)
//   --fastchat-bg (the box)  --fastchat-field-bg (inputs)  --fastchat-radius
//
// A thread is made on first use from its slug (PUT /api/v1/threads/{slug}, with the page's
// title and URL; `data-fastchat-title` / `data-fastchat-url` override them). The site's
// origin must be in the server's ALLOWED_ORIGINS (the socket and the API refuse others).
// `data-token` on the script tag: a JWT the site issued to its visitor (README,
// "Authentication"): then the name is the token's. Built on /static/js/fastchat-client.js:
// comments are sent once however the connection comes and goes, and shown once, in order.
//
// User text only ever reaches the DOM through textContent or attribute setters.

(() => {
  const script = document.currentScript;
  if (!script || !script.src) return;
  if (window.fastchatEmbed) {
    window.fastchatEmbed.scan(); // loaded twice: mount what is new
    return;
  }
  const base = new URL(script.src);
  const origin = base.origin;
  const wsUrl = `${base.protocol === "https:" ? "wss" : "ws"}://${base.host}/ws`;
  const token = script.dataset.token || null;
  const NAME_KEY = "fastchat.embed.name";
  const PAGE = 50;
  const mounted = new WeakSet();

  const CSS = `
:host { display: block; font: inherit; color: inherit; --_accent: var(--fastchat-accent, #2563eb);
  --_border: var(--fastchat-border, rgb(127 127 127 / 35%)); --_muted: var(--fastchat-muted, rgb(100 100 100)); }
.box { background: var(--fastchat-bg, transparent); border: 1px solid var(--_border);
  border-radius: var(--fastchat-radius, 8px); padding: 1em; }
h2 { font-size: 1.1em; margin: 0 0 .5em; }
ol { list-style: none; margin: 0; padding: 0; }
li { padding: .5em 0; border-top: 1px solid var(--_border); }
li.pending { opacity: .6; } li.refused .text { text-decoration: line-through; }
.meta { font-size: .85em; color: var(--_muted); margin: 0 0 .2em; }
.user { font-weight: 600; color: inherit; }
.text { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.text.deleted { font-style: italic; color: var(--_muted); }
form { display: grid; gap: .5em; margin-top: 1em; }
input, textarea, button { font: inherit; color: inherit; border-radius: calc(var(--fastchat-radius, 8px) / 2); }
input, textarea { background: var(--fastchat-field-bg, transparent); border: 1px solid var(--_border); padding: .4em; }
textarea { min-height: 4em; resize: vertical; }
button { background: var(--_accent); color: #fff; border: 0; padding: .5em 1em; cursor: pointer; justify-self: start; }
button.link { background: none; color: var(--_accent); padding: 0; margin-bottom: .5em; }
.status { font-size: .85em; color: var(--_muted); min-height: 1.2em; margin: .3em 0 0; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }`;

  const HTML = `<style>${CSS}</style><section class="box" part="box">
<h2>Comments <span class="count" data-count="0">(0)</span></h2>
<button type="button" class="link older" hidden>Show older comments</button>
<div role="log" aria-label="Comments"><ol class="list"></ol></div>
<form>
<label class="name-row"><span class="sr">Your name</span><input name="user" maxlength="64" placeholder="Your name" autocomplete="nickname"></label>
<label><span class="sr">Comment</span><textarea name="comment" required placeholder="Add a comment"></textarea></label>
<button type="submit">Post comment</button>
</form>
<p class="status" role="status"></p></section>`;

  let clientPromise = null;

  /** One connection for every thread of the page, retried (by the client) until it opens. */
  function client() {
    clientPromise ??= import(`${origin}/static/js/fastchat-client.js`).then(
      ({ FastchatClient }) => {
        const chat = new FastchatClient(wsUrl, { token, backoffCap: 30000 }).start();
        if (chat.connected) return chat;
        return new Promise((resolve) => {
          const off = chat.on("state", ({ state }) => {
            if (state !== "connected") return;
            off();
            resolve(chat);
          });
        });
      },
    );
    return clientPromise;
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  function commentEl(c) {
    const li = el("li");
    const meta = el("p", "meta");
    const time = el("time", "time", new Date(c.timestamp || Date.now()).toLocaleString());
    if (c.timestamp) time.dateTime = c.timestamp;
    meta.append(el("span", "user", c.user), " · ", time);
    li.append(meta, el("p", "text"));
    show(li, c);
    return li;
  }

  function show(li, c) {
    const text = li.querySelector(".text");
    text.textContent = c.deleted_at ? "This comment was deleted." : c.comment;
    text.classList.toggle("deleted", Boolean(c.deleted_at));
    if (c.id != null) li.dataset.id = String(c.id);
  }

  async function mount(host) {
    mounted.add(host);
    const slug = host.dataset.fastchatThread;
    const root = host.attachShadow({ mode: "open" });
    root.innerHTML = HTML; // a constant: no user data
    const $ = (s) => root.querySelector(s);
    const list = $(".list");
    const form = $("form");
    const status = $(".status");
    const count = $(".count");
    const older = $(".older");
    const nameInput = form.elements.user;
    const textInput = form.elements.comment;
    const byId = new Map();
    let total = 0;
    let oldest = null;
    const say = (text) => (status.textContent = text);
    const setCount = (n) => {
      total = n;
      count.textContent = `(${n})`;
      count.dataset.count = String(n);
    };
    if (token) $(".name-row").hidden = true;
    nameInput.value = localStorage.getItem(NAME_KEY) || "";
    say("Loading comments…");

    let post;
    try {
      const headers = { "Content-Type": "application/json" };
      if (token) headers.Authorization = `Bearer ${token}`;
      const r = await fetch(`${origin}/api/v1/threads/${encodeURIComponent(slug)}`, {
        method: "PUT",
        headers,
        body: JSON.stringify({
          title: host.dataset.fastchatTitle || document.title,
          url: host.dataset.fastchatUrl || location.href.split("#")[0],
        }),
      });
      post = await r.json();
      if (!r.ok) throw new Error(post.message || `HTTP ${r.status}`);
    } catch (err) {
      say(`Comments are unavailable: ${err.message}`);
      return;
    }
    const postId = post.id;
    host.dataset.fastchatPost = String(postId);
    setCount(post.comment_count);

    /** Insert a stored comment at its place by id; false if already shown. */
    function add(c, fresh) {
      if (byId.has(c.id)) return false;
      const li = commentEl(c);
      byId.set(c.id, li);
      let next = null;
      for (const node of list.querySelectorAll("li[data-id]")) {
        if (Number(node.dataset.id) > c.id) {
          next = node;
          break;
        }
      }
      list.insertBefore(li, next ?? list.querySelector("li:not([data-id])"));
      if (oldest === null || c.id < oldest) oldest = c.id;
      if (fresh) setCount(total + 1);
      return true;
    }

    const chat = await client();
    chat.on("POST_COMMENT", (c) => {
      if (c.post_id === postId) add(c, true);
    });
    const change = (c) => {
      if (c.post_id === postId && byId.has(c.id)) show(byId.get(c.id), c);
    };
    chat.on("COMMENT_EDITED", change);
    chat.on("COMMENT_DELETED", change);
    const stateText = {
      connected: "",
      reconnecting: "Reconnecting… comments you post are sent when it is back.",
      closed: "Offline.",
    };
    chat.on("state", ({ state }) => say(stateText[state] ?? ""));

    // The newest page first, then the live feed from its newest id: the join replays
    // whatever came in between, so nothing is missed and nothing shown twice.
    try {
      const page = await chat.history({ postId, limit: PAGE });
      for (const c of page.comments) add(c, false);
      older.hidden = !page.has_more;
      const newest = page.comments.length ? page.comments[page.comments.length - 1].id : 0;
      await chat.joinPost(postId, { lastId: newest });
      say("");
      host.dataset.fastchatLive = "true";
    } catch (err) {
      say(`Comments are unavailable: ${err.message}`);
      return;
    }

    older.addEventListener("click", async () => {
      older.disabled = true;
      try {
        const page = await chat.history({ postId, limit: PAGE, before: oldest });
        for (const c of page.comments) add(c, false);
        older.hidden = !page.has_more;
      } catch (err) {
        say(`Could not load older comments: ${err.message}`);
      } finally {
        older.disabled = false;
      }
    });

    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = textInput.value.trim();
      if (!text) return;
      const user = nameInput.value.trim() || "anonymous";
      if (!token) localStorage.setItem(NAME_KEY, user);
      const li = commentEl({ user, comment: text });
      li.classList.add("pending");
      list.append(li);
      textInput.value = "";
      chat.comment(postId, text, token ? {} : { user }).then(
        (c) => {
          li.remove();
          add(c, true);
        },
        (err) => {
          li.classList.replace("pending", "refused");
          say(`Not posted: ${err.message}`);
          if (!textInput.value) textInput.value = text;
        },
      );
    });
  }

  function scan() {
    for (const host of document.querySelectorAll("[data-fastchat-thread]")) {
      if (!mounted.has(host) && !host.shadowRoot) mount(host);
    }
  }

  window.fastchatEmbed = { scan };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
})();
