// The / page: localize times, and publish a post over REST, then show it at the top.

import { apiError, avatar, el, enhance, prefs, timeEl, validName, watchLength } from "./live.js";

const $ = (id) => document.getElementById(id);
const form = $("new-post");
const titleInput = $("post-title");
const authorInput = $("post-author");
const contentInput = $("post-content");
const submitButton = $("post-submit");
const status = $("post-status");
const posts = $("posts");
const empty = $("posts-empty");
// A field over its limit holds Publish back; its count says by how much (nothing is cut).
const overFields = new Set();
function watch(field, counter) {
  return watchLength(field, counter, (over) => {
    if (over) overFields.add(field);
    else overFields.delete(field);
    submitButton.disabled = overFields.size > 0;
  });
}
const titleOver = watch(titleInput, $("post-title-length"));
const contentOver = watch(contentInput, $("post-content-length"));

function postCard(p, fresh = true) {
  const link = el("a", { class: "post__link", href: `/post/${p.id}`, text: p.title });
  const n = p.comment_count || 0;
  return el("li", { class: `post card${fresh ? " new" : ""}`, dataset: { id: String(p.id) } }, [
    el("h3", { class: "post__title" }, [link]),
    el("p", { class: "post__excerpt", text: p.content }),
    el("div", { class: "post__meta" }, [
      el("span", { class: "byline" }, [
        avatar(p.author, "avatar--sm"),
        el("span", { class: "post__author", text: p.author }),
      ]),
      el("span", { class: "dot", "aria-hidden": "true", text: "·" }),
      timeEl(p.timestamp),
      el("span", { class: "post__count", dataset: { count: String(n) } }, [
        el("span", {}, [
          String(n),
          el("span", { class: "post__count-word", text: n === 1 ? " comment" : " comments" }),
        ]),
      ]),
    ]),
  ]);
}

function fail(message, field) {
  status.textContent = message;
  status.classList.add("error");
  if (field) field.focus();
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  status.classList.remove("error");
  const title = titleInput.value.trim();
  const author = validName(authorInput.value);
  const content = contentInput.value;
  if (!title || titleOver()) return fail("Give the post a title (1-200 characters).", titleInput);
  if (!author) return fail("Enter your name (1-64 characters).", authorInput);
  if (!content.trim()) return fail("Write something in the post.", contentInput);
  if (contentOver()) return fail("The text is over the limit: shorten it first.", contentInput);
  submitButton.disabled = true;
  status.textContent = "Publishing…";
  try {
    const response = await fetch("/api/v1/posts", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ title, content, author }),
    });
    if (response.status !== 201) {
      fail(await apiError(response, "Could not publish the post"));
      return;
    }
    const post = await response.json();
    prefs.name = author;
    posts.prepend(postCard(post));
    empty.hidden = true;
    titleInput.value = "";
    contentInput.value = "";
    titleOver();
    contentOver();
    status.textContent = "Published.";
  } catch {
    fail("Could not reach the server. Your text is still here: try again.");
  } finally {
    submitButton.disabled = false;
  }
});

/** Back/forward may show this page from a cache, older than what was just written. */
async function refreshPosts() {
  try {
    const response = await fetch("/api/v1/posts");
    if (!response.ok) return;
    const body = await response.json();
    posts.replaceChildren(...body.posts.map((p) => postCard(p, false)));
    empty.hidden = body.posts.length > 0;
  } catch {
    /* keep what is shown */
  }
}

window.addEventListener("pageshow", (e) => {
  const nav = performance.getEntriesByType("navigation")[0];
  if (e.persisted || (nav && nav.type === "back_forward")) refreshPosts();
});

// "Write a post" (shown on narrow screens, where the form is below the list): go and type.
document.querySelector(".page-head__action").addEventListener("click", (e) => {
  e.preventDefault();
  form.scrollIntoView({ block: "start" });
  titleInput.focus({ preventScroll: true });
});

enhance();
if (!authorInput.value) authorInput.value = prefs.name;
