// Gatehouse developer portal: the "try it" forms. Hand-written, no build step. Builds the request
// from the form, sends it (through the portal's proxy when it has its own address, else straight
// to this origin) and shows the real response. Everything shown is set as text, never as markup.
"use strict";
(function () {
  var proxy = document.body.getAttribute("data-try");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function pretty(body) {
    try { return JSON.stringify(JSON.parse(body), null, 2); } catch (e) { return body; }
  }

  function show(out, res, ms) {
    out.textContent = "";
    out.appendChild(el("p", "status", "HTTP " + res.status + " " + (res.statusText || "") + " · " + ms + " ms"));
    out.appendChild(el("pre", "headers", res.headers.map(function (h) { return h[0] + ": " + h[1]; }).join("\n")));
    out.appendChild(el("pre", "body", pretty(res.body) + (res.truncated ? "\n… (cut at 1 MiB)" : "")));
  }

  function fail(out, message) {
    out.textContent = "";
    out.appendChild(el("p", "status err", message));
  }

  function build(form) {
    var path = form.getAttribute("data-path"), query = [], headers = [], missing = [];
    form.querySelectorAll("input[data-in]").forEach(function (i) {
      var where = i.getAttribute("data-in"), name = i.getAttribute("data-name"), v = i.value;
      if (where === "fullpath") {
        path = v;
      } else if (where === "path") {
        if (v === "") { missing.push(name); return; }
        path = path.split("{" + name + "}").join(encodeURIComponent(v));
      } else if (v === "") {
        return;
      } else if (where === "query") {
        query.push(encodeURIComponent(name) + "=" + encodeURIComponent(v));
      } else if (where === "header") {
        headers.push([name, v]);
      }
    });
    if (query.length) path += (path.indexOf("?") < 0 ? "?" : "&") + query.join("&");
    form.querySelector("[data-headers]").value.split("\n").forEach(function (line) {
      var i = line.indexOf(":");
      if (i > 0) headers.push([line.slice(0, i).trim(), line.slice(i + 1).trim()]);
    });
    var field = form.querySelector("[data-body]"), body = field ? field.value : "";
    var method = form.getAttribute("data-method");
    if (method === "GET" || method === "HEAD") body = "";
    if (body !== "" && !headers.some(function (h) { return h[0].toLowerCase() === "content-type"; })) {
      headers.push(["content-type", field.getAttribute("data-content-type")]);
    }
    return { method: method, host: form.getAttribute("data-host"), path: path, headers: headers, body: body, missing: missing };
  }

  function send(r) {
    if (proxy) {
      return fetch(proxy, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ method: r.method, host: r.host, path: r.path, headers: r.headers, body: r.body })
      }).then(function (resp) {
        return resp.json().then(function (j) {
          if (!resp.ok) throw new Error(j.message || ("portal answered " + resp.status));
          return j;
        });
      });
    }
    return fetch(r.path, {
      method: r.method, headers: r.headers, body: r.body === "" ? undefined : r.body,
      credentials: "same-origin", redirect: "manual"
    }).then(function (resp) {
      return resp.text().then(function (t) {
        var hs = [];
        resp.headers.forEach(function (v, k) { hs.push([k, v]); });
        return { status: resp.status, statusText: resp.statusText, headers: hs, body: t };
      });
    });
  }

  document.querySelectorAll("form.try").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var out = form.querySelector(".result"), r = build(form);
      if (r.missing.length) { fail(out, "Fill in the path parameter " + r.missing.join(", ") + "."); return; }
      out.textContent = "Sending " + r.method + " " + r.path + "…";
      var started = Date.now();
      send(r).then(function (res) { show(out, res, Date.now() - started); },
        function (e) { fail(out, "The request failed: " + e.message); });
    });
  });
})();
