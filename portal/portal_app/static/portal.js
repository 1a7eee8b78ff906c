// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Upload form: name the object after the chosen file. Without JavaScript, S3 replaces
  // ${filename} in the key field itself; the policy only pins the key's prefix.
  var form = document.getElementById("upload-form");
  var file = document.getElementById("upload-file");
  if (form && file) {
    file.addEventListener("change", function () {
      var key = form.querySelector("input[name=key]");
      if (key && file.files.length) {
        key.value = form.dataset.prefix + file.files[0].name.replace(/[\\/]/g, "_");
      }
    });
  }
  // Job form: show the chosen algorithm's default hyperparameters until the user edits them.
  var algorithm = document.getElementById("algorithm_id");
  var hyper = document.getElementById("hyperparameters");
  if (algorithm && hyper) {
    var edited = false;
    hyper.addEventListener("input", function () { edited = true; });
    algorithm.addEventListener("change", function () {
      var option = algorithm.options[algorithm.selectedIndex];
      if (!edited && option) { hyper.value = option.dataset.defaults || ""; }
    });
  }
  // Tune form: show the chosen algorithm's hyperparameters and objective metrics only. The
  // other algorithms' fieldsets are disabled, so they are not posted; without JavaScript all are
  // posted and the portal reads only the chosen algorithm's fields.
  var tuneForm = document.getElementById("tune-form");
  var objective = document.getElementById("objective_metric");
  var direction = document.getElementById("objective_type");
  if (tuneForm && algorithm) {
    var showAlgorithm = function () {
      var chosen = algorithm.value;
      var sets = tuneForm.querySelectorAll("fieldset.tunables");
      for (var i = 0; i < sets.length; i++) {
        var mine = sets[i].dataset.algorithm === chosen;
        sets[i].hidden = !mine;
        sets[i].disabled = !mine;
      }
      if (objective) {
        var groups = objective.querySelectorAll("optgroup");
        for (var g = 0; g < groups.length; g++) {
          var ours = groups[g].dataset.algorithm === chosen;
          groups[g].hidden = !ours;
          groups[g].disabled = !ours;
        }
        var current = objective.options[objective.selectedIndex];
        if (!current || current.dataset.algorithm !== chosen) {
          var first = objective.querySelector('option[data-algorithm="' + chosen + '"]');
          if (first) { first.selected = true; suggestDirection(); }
        }
      }
    };
    var suggestDirection = function () {
      var option = objective && objective.options[objective.selectedIndex];
      if (direction && option && option.dataset.direction) { direction.value = option.dataset.direction; }
    };
    algorithm.addEventListener("change", showAlgorithm);
    if (objective) { objective.addEventListener("change", suggestDirection); }
    showAlgorithm();
  }
})();
