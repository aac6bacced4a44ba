// Follows a container's logs on its page: server-sent events from the
// logs API (each "line" event is one JSON line), appended to #logs with
// the time and the stream marked. Without JavaScript the section is empty.
(function () {
  "use strict";
  var pre = document.getElementById("logs");
  if (!pre || !window.EventSource) { return; }
  var max = 2000;
  var es = new EventSource(pre.getAttribute("data-src"));
  es.addEventListener("line", function (ev) {
    var l;
    try { l = JSON.parse(ev.data); } catch (e) { return; }
    var row = document.createElement("span");
    row.className = "log-" + l.stream;
    var t = l.time ? l.time.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : "";
    row.textContent = t + " " + (l.stream === "stderr" ? "ERR " : "    ") + l.text + "\n";
    var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(row);
    while (pre.childNodes.length > max) { pre.removeChild(pre.firstChild); }
    if (atEnd) { pre.scrollTop = pre.scrollHeight; }
  });
  es.onerror = function () {
    if (es.readyState === EventSource.CLOSED) { pre.setAttribute("data-state", "closed"); }
  };
})();
