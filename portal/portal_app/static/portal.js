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
})();
