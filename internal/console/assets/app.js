// switchboard console: plain JavaScript, no framework. It asks for
// confirmation before destructive forms, selects all rows, and patches the
// page from the one live stream (Server-Sent Events fed by the journal):
// an event about an extension refreshes that extension's row, the
// registrations table, the counters or the event list, by fetching the
// server-rendered fragment (never a timer poll).
(function () {
  "use strict";

  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    var msg = f.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) {
      ev.preventDefault();
    }
  });

  document.addEventListener("change", function (ev) {
    if (ev.target.id !== "all") return;
    var form = ev.target.form;
    if (!form) return;
    form.querySelectorAll('input[name="sel"]').forEach(function (c) { c.checked = ev.target.checked; });
  });

  var src = document.body.getAttribute("data-live");
  if (!src || !window.EventSource) return;
  var page = document.body.getAttribute("data-page");

  // debounce runs fn once per key within ms.
  var timers = {};
  function debounce(key, ms, fn) {
    if (timers[key]) return;
    timers[key] = setTimeout(function () { delete timers[key]; fn(); }, ms);
  }

  function fetchHTML(url) {
    return fetch(url, { headers: { "X-Fragment": "1" }, credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.text();
    });
  }

  // refreshMain swaps #content with the page's own fragment (same URL).
  function refreshMain() {
    debounce("main", page === "overview" ? 1000 : 300, function () {
      var active = document.activeElement && document.activeElement.id;
      var checked = Array.prototype.map.call(document.querySelectorAll('input[name="sel"]:checked'), function (c) { return c.value; });
      fetchHTML(location.pathname + location.search).then(function (html) {
        var c = document.getElementById("content");
        if (!c) return;
        c.innerHTML = html;
        checked.forEach(function (v) {
          var box = c.querySelector('input[name="sel"][value="' + CSS.escape(v) + '"]');
          if (box) box.checked = true;
        });
        if (active) { var el = document.getElementById(active); if (el) el.focus(); }
      }).catch(function () {});
    });
  }

  // refreshParts refetches the page's fragment and swaps only the
  // elements with the given ids (a form being edited stays as it is).
  function refreshParts(ids) {
    debounce("parts", 300, function () {
      fetchHTML(location.pathname + location.search).then(function (html) {
        var t = document.createElement("template");
        t.innerHTML = html;
        ids.forEach(function (id) {
          var fresh = t.content.getElementById(id), cur = document.getElementById(id);
          if (fresh && cur) cur.replaceWith(fresh);
        });
      }).catch(function () {});
    });
  }

  function refreshRow(key, domain, number) {
    debounce("row:" + key, 150, function () {
      var row = document.querySelector('tr[data-ext="' + CSS.escape(key) + '"]');
      if (!row) return;
      fetchHTML("/extensions/row?domain=" + encodeURIComponent(domain) + "&number=" + encodeURIComponent(number)).then(function (html) {
        var row = document.querySelector('tr[data-ext="' + CSS.escape(key) + '"]');
        if (!row) return;
        var box = row.querySelector('input[name="sel"]');
        var was = box && box.checked;
        var t = document.createElement("tbody");
        t.innerHTML = html.trim();
        var fresh = t.firstElementChild;
        if (!fresh) return;
        if (was) { var nb = fresh.querySelector('input[name="sel"]'); if (nb) nb.checked = true; }
        if (fresh.getAttribute("data-status") !== row.getAttribute("data-status")) fresh.classList.add("flash");
        row.replaceWith(fresh);
      }).catch(function () {});
    });
  }

  function text(s) { return document.createTextNode(s == null ? "" : String(s)); }
  function cell(tr, s) { var td = document.createElement("td"); td.appendChild(text(s)); tr.appendChild(td); return td; }
  function clock(iso) {
    var d = new Date(iso);
    if (isNaN(d)) return iso;
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  // prependEvent adds a journal event at the top of #events (built with DOM
  // nodes, never innerHTML, so event text cannot inject markup).
  function prependEvent(e) {
    var tbody = document.querySelector("#events tbody");
    if (!tbody) return;
    var empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    var tr = document.createElement("tr");
    tr.className = "flash cause-" + e.cause;
    var t = document.createElement("time");
    t.setAttribute("datetime", e.time);
    t.textContent = clock(e.time);
    var td = document.createElement("td"); td.appendChild(t); tr.appendChild(td);
    cell(tr, e.kind);
    var c = document.createElement("code"); c.textContent = e.cause;
    td = document.createElement("td"); td.appendChild(c); tr.appendChild(td);
    td = document.createElement("td");
    if (e.extension) {
      var a = document.createElement("a");
      a.href = "/extensions/" + encodeURIComponent((e.domain || "").toLowerCase()) + "/" + encodeURIComponent(e.extension);
      a.textContent = e.extension;
      td.appendChild(a);
    }
    tr.appendChild(td);
    cell(tr, e.source); cell(tr, e.user_agent); cell(tr, e.detail);
    tbody.insertBefore(tr, tbody.firstChild);
    var max = page === "journal" ? 500 : 20;
    while (tbody.rows.length > max) tbody.deleteRow(tbody.rows.length - 1);
  }

  function journalMatches(e) {
    var f = document.getElementById("jfilter");
    if (!f) return true;
    var v = function (n) { var el = f.elements[n]; return el ? el.value.trim() : ""; };
    if (v("ext") && v("ext") !== e.extension) return false;
    if (v("cause") && v("cause") !== e.cause) return false;
    if (v("kind") && v("kind") !== e.kind) return false;
    if (v("ip")) { var ip = (e.source || "").replace(/:\d+$/, "").replace(/^\[|\]$/g, ""); if (ip !== v("ip")) return false; }
    return true;
  }

  function onEvent(e) {
    var key = e.extension ? (e.domain || "").toLowerCase() + "/" + e.extension : "";
    switch (page) {
    case "overview":
      prependEvent(e);
      if (e.extension) refreshMain();
      break;
    case "extensions":
      if (key) refreshRow(key, e.domain, e.extension);
      break;
    case "extension":
      var lead = document.getElementById("ext-lead");
      if (lead && lead.getAttribute("data-ext") === key) refreshParts(["ext-lead", "bindings", "events"]);
      break;
    case "registrations":
      if (e.kind === "register" || e.kind === "binding") refreshMain();
      break;
    case "failed":
      if (e.kind === "register" && e.cause !== "registered" && e.cause !== "unregistered" && e.cause !== "challenged") refreshMain();
      break;
    case "calls":
      if (e.kind === "invite") refreshMain();
      break;
    case "journal":
      var follow = document.getElementById("follow");
      if (follow && follow.checked && journalMatches(e)) prependEvent(e);
      break;
    }
  }

  var badge = document.getElementById("live");
  var es = new EventSource(src);
  es.addEventListener("open", function () { if (badge) { badge.hidden = false; badge.textContent = "live"; } });
  es.addEventListener("error", function () { if (badge) badge.textContent = "reconnecting…"; });
  // resync: more happened than the stream sends one by one (a flood):
  // re-render the page's content once.
  es.addEventListener("resync", function () {
    if (page === "extension") refreshParts(["ext-lead", "bindings", "events"]);
    else if (page !== "journal" && page !== "doctor" && page !== "acls" && page !== "admins") refreshMain();
  });
  es.addEventListener("journal", function (m) {
    var e;
    try { e = JSON.parse(m.data); } catch (err) { return; }
    onEvent(e);
  });
})();
