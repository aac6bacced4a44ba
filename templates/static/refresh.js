// Live refresh for pages that work without it: every data-refresh seconds
// re-fetch this page and swap the #live block. Pauses while the tab is
// hidden or a form field has focus; stops on a login redirect.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch || !window.DOMParser) { return; }
  var every = parseInt(live.getAttribute("data-refresh"), 10);
  if (!(every > 0)) { return; }
  var busy = false;
  function tick() {
    if (busy || document.hidden) { return; }
    var a = document.activeElement;
    if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT")) { return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (!r.ok || r.redirected) { throw new Error("refresh stopped: " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (next) { live.innerHTML = next.innerHTML; }
        busy = false;
      })
      .catch(function () { clearInterval(timer); });
  }
  var timer = setInterval(tick, every * 1000);
}());
