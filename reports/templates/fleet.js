// Fleet report: sort the host table by a column when its header is clicked (again: reverse).
// The table is already in its default order (worst verdict first) without this script. No report data here.
(function () {
  "use strict";
  function key(cell, numeric) {
    var value = cell ? cell.getAttribute("data-key") || cell.textContent.trim() : "";
    return numeric ? parseFloat(value) || 0 : value.toLowerCase();
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var body = table.tBodies[0];
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (head, column) {
      var kind = head.getAttribute("data-sort");
      if (!kind) { return; }
      head.tabIndex = 0;
      function sort() {
        var ascending = head.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) { other.removeAttribute("aria-sort"); });
        head.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var rows = Array.prototype.map.call(body.rows, function (row, index) { return [row, index]; });
        rows.sort(function (a, b) {
          var x = key(a[0].cells[column], kind === "num"), y = key(b[0].cells[column], kind === "num");
          var order = x < y ? -1 : x > y ? 1 : 0;
          return (ascending ? order : -order) || a[1] - b[1];
        });
        rows.forEach(function (pair) { body.appendChild(pair[0]); });
      }
      head.addEventListener("click", sort);
      head.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); }
      });
    });
  });
}());
