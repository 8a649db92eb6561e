// Live values and stats over server-sent events. No inline script: the
// page's Content-Security-Policy allows only this file.
"use strict";
(function () {
  var state = document.getElementById("live-state");
  var rows = document.getElementById("value-rows");
  if (!rows || !window.EventSource) { return; }
  var es = new EventSource("/events");
  es.onopen = function () { state.textContent = "Live: connected."; };
  es.onerror = function () { state.textContent = "Live: reconnecting…"; };
  function cell(tr, cls, text) {
    var td = tr.querySelector("td." + cls);
    if (td) { td.textContent = text; }
  }
  es.addEventListener("values", function (ev) {
    JSON.parse(ev.data).forEach(function (v) {
      var tr = null;
      for (var i = 0; i < rows.rows.length; i++) {
        if (rows.rows[i].getAttribute("data-topic") === v.topic) { tr = rows.rows[i]; break; }
      }
      if (!tr) {
        tr = document.createElement("tr");
        tr.setAttribute("data-topic", v.topic);
        ["", "v", "t"].forEach(function (c) {
          var td = document.createElement("td");
          if (c) { td.className = c; }
          tr.appendChild(td);
        });
        tr.firstChild.textContent = v.name;
        tr.firstChild.title = v.topic;
        rows.appendChild(tr);
      }
      var td = tr.querySelector("td.v");
      if (td && td.textContent !== v.value) {
        td.textContent = v.value;
        tr.className = "changed";
        setTimeout(function () { tr.className = ""; }, 800);
      }
      cell(tr, "t", v.ts || "");
    });
    state.textContent = "Live: updated " + new Date().toLocaleTimeString() + ".";
  });
  es.addEventListener("stats", function (ev) {
    var s = JSON.parse(ev.data);
    Object.keys(s).forEach(function (k) {
      document.querySelectorAll('[data-stat="' + k + '"]').forEach(function (el) { el.textContent = String(s[k]); });
    });
  });
  var chart = document.getElementById("chart");
  if (chart) {
    setInterval(function () { chart.src = "/chart.svg?t=" + Date.now(); }, 30000);
  }
})();
