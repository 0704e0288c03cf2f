// Render the math that pymdownx.arithmatex (generic mode) leaves in the page:
// <span class="arithmatex">\(...\)</span> inline and <div class="arithmatex">\[...\]</div> display.
// KaTeX is loaded from the site itself (assets/katex), so no network is needed.
(function () {
  "use strict";

  function strip(tex) {
    tex = tex.trim();
    if ((tex.startsWith("\\(") && tex.endsWith("\\)")) || (tex.startsWith("\\[") && tex.endsWith("\\]"))) {
      return tex.slice(2, -2);
    }
    return tex;
  }

  function render(root) {
    if (typeof katex === "undefined") {
      return;
    }
    root.querySelectorAll(".arithmatex").forEach(function (element) {
      if (element.getAttribute("data-katex") === "done") {
        return;
      }
      katex.render(strip(element.textContent), element, {
        displayMode: element.tagName === "DIV",
        throwOnError: false,
      });
      element.setAttribute("data-katex", "done");
    });
  }

  // Material for MkDocs publishes `document$`, which emits on every page (also with instant navigation).
  if (typeof document$ !== "undefined") {
    document$.subscribe(function () {
      render(document.body);
    });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      render(document.body);
    });
  } else {
    render(document.body);
  }
})();
