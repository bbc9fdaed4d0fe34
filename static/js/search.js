// Full-text search on the chat page: GET /api/v1/search, in the room you are in (or every
// room you may read, before you join one). Snippets come as parts, each a run of plain text
// that matched the query or not: they are shown with text nodes and <mark>, never as HTML.

import { authHeaders, el, timeEl } from "./live.js";

const PAGE = 20;

/**
 * Wire the search form. `room()` is the room to search (empty: all), `reveal(id)` shows a
 * message of the current room if it is on the page (false if it is not).
 */
export function setupSearch({ form, input, list, status, more, room, reveal }) {
  let query = "";
  let scope = "";
  let cursor = null;
  let generation = 0;

  async function run(append) {
    const gen = ++generation;
    const params = new URLSearchParams({ q: query, limit: String(PAGE) });
    if (scope) params.set("room", scope);
    if (append && cursor) params.set("cursor", cursor);
    status.textContent = "Searching…";
    more.hidden = true;
    let body;
    try {
      const response = await fetch(`/api/v1/search?${params}`, { headers: authHeaders() });
      body = await response.json();
      if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
    } catch (error) {
      if (gen === generation) status.textContent = `Search failed: ${error.message}`;
      return;
    }
    if (gen !== generation) return; // a newer search started meanwhile
    if (!append) list.replaceChildren();
    for (const hit of body.results) list.append(hitEl(hit));
    const shown = list.children.length;
    status.textContent = shown
      ? `${shown}${body.next ? "+" : ""} result${shown === 1 ? "" : "s"}`
      : `No messages with “${query}”${scope ? ` in #${scope}` : ""}.`;
    cursor = body.next;
    more.hidden = !cursor;
  }

  function hitEl(hit) {
    const snippet = el(
      "p",
      { class: "search-hit__text" },
      hit.parts.map((part) => (part.match ? el("mark", { text: part.text }) : part.text)),
    );
    const where = hit.room ? `#${hit.room}` : `post ${hit.post_id}`;
    const node = el("li", { class: "search-hit", dataset: { id: String(hit.id) } }, [
      el("p", { class: "search-hit__meta" }, [
        el("span", { class: "search-hit__user", text: hit.user }),
        ` · ${where} · `,
        timeEl(hit.timestamp),
      ]),
      snippet,
    ]);
    if (hit.room && hit.room === room()) {
      node.tabIndex = 0;
      node.classList.add("search-hit--here");
      const go = () => reveal(hit.id);
      node.addEventListener("click", go);
      node.addEventListener("keydown", (e) => {
        if (e.key === "Enter") go();
      });
    }
    return node;
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    query = input.value.trim();
    if (!query) return;
    scope = room();
    cursor = null;
    run(false);
  });
  more.addEventListener("click", () => run(true));
}
