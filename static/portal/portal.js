/* Copy buttons: progressive enhancement; without JavaScript the fields stay selectable. */
(function () {
  "use strict";
  function announce(button, text) {
    var status = document.getElementById(button.getAttribute("data-status") || "");
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = text;
    if (status) { status.textContent = text; }
    window.setTimeout(function () { button.textContent = original; }, 2000);
  }
  function fallbackCopy(field) {
    field.focus();
    field.select();
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var field = document.getElementById(button.getAttribute("data-copy-target"));
    if (!field) { return; }
    var value = field.value !== undefined ? field.value : field.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(value).then(
        function () { announce(button, "Copied"); },
        function () { announce(button, fallbackCopy(field) ? "Copied" : "Press Ctrl+C"); }
      );
    } else {
      announce(button, fallbackCopy(field) ? "Copied" : "Press Ctrl+C");
    }
  });
  document.querySelectorAll("[data-copy-target]").forEach(function (b) { b.hidden = false; });
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });
})();
