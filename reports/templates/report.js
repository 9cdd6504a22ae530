// Progressive enhancement only: without this script every row and card is shown.
(function () {
  "use strict";
  var form = document.getElementById("filter");
  var table = document.getElementById("matrix-table");
  if (form && table) {
    form.hidden = false;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var apply = function () {
      var adapter = form.elements.adapter.value;
      var status = form.elements.status.value;
      var text = form.elements.text.value.trim().toLowerCase();
      table.querySelectorAll("[data-adapter]").forEach(function (el) {
        el.classList.toggle("col-hidden", adapter !== "" && el.getAttribute("data-adapter") !== adapter);
      });
      var shown = 0;
      rows.forEach(function (row) {
        var cells = row.querySelectorAll("td[data-adapter]");
        var statusOk = status === "";
        var textOk = text === "" || row.getAttribute("data-cell").toLowerCase().indexOf(text) >= 0;
        cells.forEach(function (td) {
          var mine = adapter === "" || td.getAttribute("data-adapter") === adapter;
          if (mine && td.getAttribute("data-outcome") === status) { statusOk = true; }
          if (mine && text !== "" && td.textContent.toLowerCase().indexOf(text) >= 0) { textOk = true; }
        });
        row.hidden = !(statusOk && textOk);
        if (!row.hidden) { shown += 1; }
      });
      document.getElementById("shown").textContent = shown + " of " + rows.length + " cells shown";
    };
    form.addEventListener("input", apply);
    form.addEventListener("change", apply);
    form.addEventListener("submit", function (event) { event.preventDefault(); });
    apply();
  }
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function (event) {
      event.preventDefault();  // inside <summary>: copying must not fold the script away
      var text = document.getElementById(button.getAttribute("data-copy")).textContent;
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
      } else {
        fallback(text);
        done();
      }
    });
  });
  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more a page can do */ }
    document.body.removeChild(area);
  }
})();
