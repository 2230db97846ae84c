// The case page: times written by the server in UTC are shown in the user's (or the
// site's) time zone; everything else on the page is server-rendered.
"use strict";

(() => {
  for (const node of document.querySelectorAll("time.local-time")) {
    const iso = node.getAttribute("datetime");
    if (iso && iso !== "None") node.textContent = Centrale.fmtTime(iso);
    else node.textContent = "–";
  }
})();
