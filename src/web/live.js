// cbtsim serve: live pages. The element with data-live names the events
// to follow; what they carry is set as text, never as markup.
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  if (!root || !window.EventSource) {
    return;
  }
  var source = new EventSource(root.getAttribute("data-live"));

  function element(tag, text, className) {
    var e = document.createElement(tag);
    if (text !== undefined) {
      e.textContent = text;
    }
    if (className) {
      e.className = className;
    }
    return e;
  }

  // A session: each turn as the page renders it.
  source.addEventListener("turn", function (event) {
    var turn = JSON.parse(event.data);
    var number = turn.position + 1;
    if (document.getElementById("turn-" + number)) {
      return;
    }
    var div = element("div", undefined, "turn " + turn.speaker);
    div.id = "turn-" + number;
    div.appendChild(element("b", number + " " + turn.label));
    div.appendChild(element("p", turn.text));
    div.appendChild(element("small", turn.notes));
    root.appendChild(div);
  });

  // A run: its sessions' rows, rebuilt.
  source.addEventListener("sessions", function (event) {
    var rows = JSON.parse(event.data);
    while (root.firstChild) {
      root.removeChild(root.firstChild);
    }
    rows.forEach(function (s) {
      var tr = document.createElement("tr");
      var link = element("a", String(s.id));
      link.href = "/sessions/" + s.id;
      var first = document.createElement("td");
      first.appendChild(link);
      tr.appendChild(first);
      var course = document.createElement("td");
      if (s.course !== null) {
        var courseLink = element("a", String(s.course));
        courseLink.href = "/courses/" + s.course;
        course.appendChild(courseLink);
      }
      tr.appendChild(course);
      [s.persona, s.session_number, s.turns, s.safety_events,
        s.termination_reason === null ? "(not ended)" : s.termination_reason
      ].forEach(function (value) {
        tr.appendChild(element("td", String(value)));
      });
      root.appendChild(tr);
    });
  });

  function stop(text) {
    source.close();
    var status = document.getElementById("status");
    if (status) {
      status.textContent = text;
    }
  }

  source.addEventListener("failed", function () {
    stop("The store could not be read; reload to try again.");
  });

  source.addEventListener("quiet", function () {
    stop("Nothing new for 30 minutes; reload to watch again.");
  });

  source.addEventListener("end", function (event) {
    source.close();
    var status = document.getElementById("status");
    var ending = JSON.parse(event.data).ending;
    if (status) {
      status.textContent = ending ? "Ended. " + ending : "finished";
    }
  });
})();
