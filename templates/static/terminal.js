// The browser shell: an xterm.js terminal wired to the exec websocket.
// Protocol (see internal/server/containers.go): binary messages to the
// server are keystrokes; text messages are {"type":"resize",rows,cols};
// binary messages from the server are one stream byte then output; the
// last text message is {"type":"exit","code":N}.
(function () {
  "use strict";
  var el = document.getElementById("terminal");
  var status = document.getElementById("term-status");
  if (!el || !window.Terminal || !window.WebSocket) { return; }
  var term = new window.Terminal({ cursorBlink: true, convertEol: false, rows: 24, cols: 100 });
  term.open(el);
  var proto = window.location.protocol === "https:" ? "wss:" : "ws:";
  var url = proto + "//" + window.location.host + el.getAttribute("data-socket") +
    "&rows=" + term.rows + "&cols=" + term.cols;
  var ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  var enc = new TextEncoder();
  function setStatus(s) { status.textContent = s; el.setAttribute("data-state", s); }
  function sendSize() {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "resize", rows: term.rows, cols: term.cols }));
    }
  }
  // Fit the terminal to its box: character cells are measured once.
  function fit() {
    var cell = el.querySelector(".xterm-char-measure-element");
    // The measure element holds a run of characters: divide by its length.
    var w = cell ? cell.getBoundingClientRect().width / Math.max(1, cell.textContent.length) : 9;
    var h = cell ? cell.getBoundingClientRect().height : 17;
    if (!(w > 0 && h > 0)) { return; }
    var cols = Math.max(20, Math.floor(el.clientWidth / w) - 1);
    var rows = Math.max(5, Math.floor(Math.max(el.clientHeight, 24 * h) / h));
    if (cols !== term.cols || rows !== term.rows) { term.resize(cols, rows); }
  }
  term.onResize(sendSize);
  window.addEventListener("resize", fit);
  ws.onopen = function () { setStatus("connected"); fit(); sendSize(); term.focus(); };
  ws.onmessage = function (ev) {
    if (typeof ev.data === "string") {
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "exit") { setStatus("exited with code " + m.code); }
      return;
    }
    term.write(new Uint8Array(ev.data).subarray(1));
  };
  ws.onclose = function () {
    if (el.getAttribute("data-state") === "connected") { setStatus("disconnected"); }
  };
  term.onData(function (d) {
    if (ws.readyState === WebSocket.OPEN) { ws.send(enc.encode(d)); }
  });
})();
