// orchestrator's own script for the web UI: theme, confirmations, CSRF header, log resume.
// Loaded before htmx (not deferred) so its listeners are in place first. No inline scripts:
// the Content-Security-Policy allows scripts from this site's /static/ only.
(function () {
  "use strict";
  var THEME_KEY = "orchestrator-theme";

  function applyTheme(theme) {
    document.documentElement.setAttribute("data-theme", theme || "auto");
  }
  try { applyTheme(window.localStorage.getItem(THEME_KEY)); } catch (e) { applyTheme("auto"); }

  function currentTheme() {
    var set = document.documentElement.getAttribute("data-theme");
    if (set === "light" || set === "dark") return set;
    return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest("#theme-toggle");
    if (!toggle) return;
    var next = currentTheme() === "dark" ? "light" : "dark";
    applyTheme(next);
    try { window.localStorage.setItem(THEME_KEY, next); } catch (e) { /* private mode */ }
  });

  // A grid cell: the run page of its column, with its row's task log open.
  document.addEventListener("click", function (event) {
    var cell = event.target.closest && event.target.closest("#grid tbody td");
    if (!cell || cell.classList.contains("c-absent")) return;
    var row = cell.parentElement;
    var column = Array.prototype.indexOf.call(row.querySelectorAll("td"), cell);
    var heads = document.querySelectorAll("#grid thead th[data-run]");
    if (column < 0 || column >= heads.length) return;
    var run = heads[column].getAttribute("data-run");
    var task = row.getAttribute("data-task");
    window.location.href = "/runs/" + encodeURIComponent(run) + "?task=" +
      encodeURIComponent(task) + "#log";
  });

  // <form data-confirm="Cancel run X?">: ask first (destructive buttons).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  }, true);

  // htmx requests carry the session's CSRF token as a header.
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content");
  });

  // A followed log resumes from the last byte offset it showed, even when the SSE extension
  // makes a new EventSource (which would not send Last-Event-ID).
  var lastLogOffset = null;
  document.addEventListener("htmx:sseMessage", function (event) {
    if (event.detail && event.detail.type === "log" && event.detail.lastEventId) {
      lastLogOffset = event.detail.lastEventId;
      var log = document.getElementById("log-text");
      var follow = document.getElementById("log-follow");
      if (log && follow && follow.checked) log.scrollTop = log.scrollHeight;
    }
    if (event.detail && event.detail.type === "log-end") {
      var state = document.getElementById("log-state");
      if (state) state.textContent = "ended";
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.htmx) return;
    window.htmx.createEventSource = function (url) {
      var target = new URL(url, window.location.href);
      if (lastLogOffset !== null && target.searchParams.has("task_id")) {
        target.searchParams.set("offset", lastLogOffset);
      }
      return new EventSource(target.toString(), { withCredentials: true });
    };
    var log = document.getElementById("log-text");
    if (log) log.scrollTop = log.scrollHeight;
  });
})();
