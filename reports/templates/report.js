// Severity filter and search for the findings. It only hides and shows what the page already
// contains (reads textContent, sets `hidden`); it never builds markup from data. Without
// JavaScript the <html class="no-js"> rule keeps the controls hidden and every finding shown.
(function () {
  var root = document.documentElement;
  root.className = root.className.replace(/\bno-js\b/, "js");
  var controls = document.getElementById("finding-controls");
  if (!controls) { return; }
  var findings = Array.prototype.slice.call(document.querySelectorAll("#findings .finding"));
  var boxes = Array.prototype.slice.call(controls.querySelectorAll("input[data-severity]"));
  var search = document.getElementById("finding-search");
  var counter = document.getElementById("finding-count");
  var texts = findings.map(function (el) { return el.textContent.toLowerCase(); });

  function apply() {
    var wanted = {};
    boxes.forEach(function (box) { wanted[box.getAttribute("data-severity")] = box.checked; });
    var terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    findings.forEach(function (el, i) {
      var ok = wanted[el.getAttribute("data-severity")] !== false &&
        terms.every(function (term) { return texts[i].indexOf(term) !== -1; });
      el.hidden = !ok;
      if (ok) { shown += 1; }
    });
    counter.textContent = counter.getAttribute("data-template")
      .replace("{shown}", String(shown)).replace("{total}", String(findings.length));
  }

  boxes.forEach(function (box) { box.addEventListener("change", apply); });
  search.addEventListener("input", apply);
  apply();
})();
