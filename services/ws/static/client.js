/*
 * Herald in-app inbox client.
 *
 *   <script src="https://herald.example.com/v1/ws/client.js"></script>
 *   <script>
 *     var inbox = HeraldInbox.connect({
 *       url: "wss://herald.example.com/v1/ws",     // optional: defaults to this script's origin
 *       token: function () {                        // a string, or a function returning a string or a Promise
 *         return fetch("/my-backend/herald-token").then(function (r) { return r.json(); })
 *           .then(function (j) { return j.token; });
 *       },
 *       lastId: localStorage.getItem("herald.lastId"), // optional: resume after this item id
 *       onItem: function (item) { ... },             // a new inbox item
 *       onState: function (item) { ... },            // an item was read or done
 *       onStatus: function (status) { ... }          // "connecting", "open", "closed"
 *     });
 *     inbox.close();
 *   </script>
 *
 * The connection resumes after every disconnect with the id of the last item
 * it received, so no item is missed or repeated. A token function is called
 * again before each reconnect, so expired tokens are replaced.
 */
(function (root) {
  "use strict";

  var scriptOrigin = (function () {
    try {
      var s = document.currentScript;
      if (s && s.src) { return new URL(s.src).origin; }
    } catch (e) { /* not in a browser */ }
    return root.location ? root.location.origin : "";
  })();

  function defaultURL() {
    return scriptOrigin.replace(/^http/, "ws") + "/v1/ws";
  }

  function resolveToken(token) {
    try {
      var t = typeof token === "function" ? token() : token;
      return Promise.resolve(t);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  function connect(opts) {
    opts = opts || {};
    var base = (opts.url || defaultURL()).split("?")[0];
    var lastId = opts.lastId || "";
    var onItem = opts.onItem || function () {};
    var onState = opts.onState || function () {};
    var onStatus = opts.onStatus || function () {};
    var minDelay = opts.minDelay || 500;
    var maxDelay = opts.maxDelay || 30000;
    var delay = minDelay;
    var ws = null;
    var timer = null;
    var stopped = false;

    function schedule() {
      if (stopped) { return; }
      var wait = delay / 2 + Math.random() * delay / 2;
      delay = Math.min(delay * 2, maxDelay);
      timer = setTimeout(open, wait);
    }

    function open() {
      timer = null;
      if (stopped) { return; }
      onStatus("connecting");
      resolveToken(opts.token).then(function (token) {
        if (stopped) { return; }
        var url = base + "?token=" + encodeURIComponent(token || "");
        if (lastId) { url += "&last_id=" + encodeURIComponent(lastId); }
        var sock = new WebSocket(url);
        var lost = false;
        // Browsers fire close after a failed connection, some runtimes only
        // error: whichever comes first schedules the one reconnect.
        function onLost() {
          if (lost) { return; }
          lost = true;
          if (ws === sock) { ws = null; }
          onStatus("closed");
          schedule();
        }
        ws = sock;
        ws.onerror = onLost;
        ws.onopen = function () {
          delay = minDelay;
          onStatus("open");
        };
        ws.onmessage = function (ev) {
          var msg;
          try { msg = JSON.parse(ev.data); } catch (e) { return; }
          if (!msg || !msg.item) { return; }
          if (msg.type === "item") {
            if (!lastId || msg.item.id > lastId) { lastId = msg.item.id; }
            onItem(msg.item);
          } else if (msg.type === "state") {
            onState(msg.item);
          }
        };
        ws.onclose = onLost;
      }, function () {
        onStatus("closed");
        schedule();
      });
    }

    open();
    return {
      close: function () {
        stopped = true;
        if (timer) { clearTimeout(timer); }
        if (ws) { ws.close(1000, "bye"); }
      },
      lastId: function () { return lastId; }
    };
  }

  root.HeraldInbox = { connect: connect };
})(typeof window !== "undefined" ? window : this);
