// drover's dashboard, live: pages read fine without this script. With it,
// the page listens to /events and, when a report is stored, fetches itself
// again and swaps <main id="live"> in place (at most once a second).
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  if (!window.EventSource || !window.fetch || !document.getElementById("live")) {
    return;
  }
  var swaps = 0;
  var timer = null;
  var inFlight = false;
  var again = false;

  function mark(on) {
    if (status) {
      status.className = "live-status " + (on ? "on" : "off");
    }
  }

  // An operator typing into a form of the page (a drain deadline) keeps
  // what they typed: the swap waits until they leave the field.
  function typing() {
    var live = document.getElementById("live");
    var active = document.activeElement;
    return !!(live && active && active.tagName === "INPUT" && live.contains(active));
  }

  function refresh() {
    timer = null;
    if (typing()) {
      schedule();
      return;
    }
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var current = document.getElementById("live");
        if (next && current) {
          current.replaceWith(document.importNode(next, true));
          swaps += 1;
          document.body.dataset.liveUpdates = String(swaps);
        }
      })
      .catch(function () { mark(false); })
      .then(function () {
        inFlight = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  function schedule() {
    if (timer === null) {
      timer = window.setTimeout(refresh, 1000);
    }
  }

  var events = new EventSource("/events");
  events.addEventListener("open", function () { mark(true); });
  events.addEventListener("error", function () { mark(false); });
  events.addEventListener("report", schedule);
})();
