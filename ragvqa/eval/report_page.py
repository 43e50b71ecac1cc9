"""The fixed text of the HTML report (`ragvqa.eval.report`): its stylesheet, its filter script,
and the Content-Security-Policy that lets only that script run.

The script filters the cards by split, question type and outcome, reads the filters from the URL
fragment on load (`report.html#correct=wrong&split=val`) and writes them back when changed; it
sets `data-filters="ready"` on the body once it has run.
"""

from __future__ import annotations

import base64
import hashlib

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em;color:#222}
h1{font-size:1.4em;margin:.2em 0}
table.kv{border-collapse:collapse;margin:.5em 0}
table.kv td{padding:1px 10px 1px 0;vertical-align:top}
table.kv td:first-child{color:#555}
.top{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
.filters{position:sticky;top:0;background:#f6f6f6;border:1px solid #ddd;padding:.5em;
margin:1em 0;z-index:1}
.filters label{margin-right:1.2em}
#counter{font-weight:bold;margin-left:.5em}
.card{display:flex;gap:1em;border:1px solid #ccc;border-radius:6px;padding:.8em;margin:.8em 0}
.card[hidden]{display:none}
.card.correct{border-left:6px solid #2a8a3a}
.card.wrong{border-left:6px solid #c0392b}
.card.failed{border-left:6px solid #7f7f7f}
.img{flex:0 0 256px;text-align:center}
.img img{max-width:256px;max-height:256px}
.noimg{width:256px;height:120px;background:#eee;color:#777;display:flex;align-items:center;
justify-content:center}
.body{flex:1;min-width:0}
.q{font-size:1.1em;font-weight:600;margin:.2em 0 .4em}
.meta{color:#666;font-size:.9em}
.badge{display:inline-block;padding:0 .5em;border-radius:3px;color:#fff;font-size:.85em}
.badge.correct{background:#2a8a3a}.badge.wrong{background:#c0392b}
.badge.failed{background:#7f7f7f}.badge.unscored{background:#b08900}
.error{color:#c0392b;white-space:pre-wrap}
ol.passages{padding-left:1.5em;margin:.3em 0}
ol.passages li{margin:.25em 0}
li.gold{background:#fff4c2}
.tag{font-size:.8em;border:1px solid #999;border-radius:3px;padding:0 .3em;margin-left:.3em}
.tag.gold{border-color:#b08900;color:#7a5f00}
.tag.seen{border-color:#2c6fbb;color:#2c6fbb}
.snippet{color:#444;font-size:.9em}
details summary{cursor:pointer;color:#555}
"""

SCRIPT = """
(function () {
  "use strict";
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  var selects = {
    split: document.getElementById("f-split"),
    type: document.getElementById("f-type"),
    correct: document.getElementById("f-correct")
  };
  var attrs = {split: "split", type: "qtype", correct: "outcome"};
  var counter = document.getElementById("counter");
  var keys = Object.keys(selects);
  function pick(select, value) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === value) { select.selectedIndex = i; return; }
    }
  }
  function apply() {
    var shown = 0;
    cards.forEach(function (card) {
      var visible = keys.every(function (key) {
        var select = selects[key];
        return select.selectedIndex === 0 || card.dataset[attrs[key]] === select.value;
      });
      card.hidden = !visible;
      if (visible) { shown += 1; }
    });
    counter.textContent = shown + " of " + cards.length + " questions shown";
  }
  function readFragment() {
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    keys.forEach(function (key) {
      if (params.has(key)) { pick(selects[key], params.get(key)); }
    });
  }
  function writeFragment() {
    var params = new URLSearchParams();
    keys.forEach(function (key) {
      if (selects[key].selectedIndex > 0) { params.set(key, selects[key].value); }
    });
    var text = params.toString();
    try {
      history.replaceState(null, "", text ? "#" + text : window.location.pathname);
    } catch (e) { /* some browsers refuse history on file:// pages */ }
  }
  keys.forEach(function (key) {
    selects[key].addEventListener("change", function () { apply(); writeFragment(); });
  });
  window.addEventListener("hashchange", function () { readFragment(); apply(); });
  readFragment();
  apply();
  document.body.setAttribute("data-filters", "ready");
})();
"""


def content_security_policy() -> str:
    """Only inline styles, data: images and this module's script (by its sha256) may load."""
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'"
    )
