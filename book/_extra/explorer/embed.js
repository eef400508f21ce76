// embed.js: fit every embedded EM explorer's iframe to its content (no clipping, no inner
// scroll bar). The explorer page (index.html) posts {type: "em-explorer-height", height} to its
// parent whenever its height changes; this script, loaded once by the book page, sets the
// frame's height to it. Frames are found by their class "gmm-explorer-frame".
(function () {
  "use strict";
  window.addEventListener("message", function (event) {
    var data = event.data;
    if (!data || data.type !== "em-explorer-height" || !(data.height > 0)) return;
    var frames = document.querySelectorAll("iframe.gmm-explorer-frame");
    for (var i = 0; i < frames.length; i++) {
      var frame = frames[i];
      if (frame.contentWindow !== event.source) continue;
      // With box-sizing: border-box (the theme's default) the height includes the border.
      var style = getComputedStyle(frame);
      var border = style.boxSizing === "border-box"
        ? parseFloat(style.borderTopWidth) + parseFloat(style.borderBottomWidth) : 0;
      frame.style.height = Math.ceil(data.height + border) + "px";
    }
  });
})();
