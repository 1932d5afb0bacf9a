// The desk's and the public page's map: markers from the page's JSON, tiles only when the
// server has MAP_TILE_URL. Without tiles the markers still show, on a plain background.
(function () {
  "use strict";
  var box = document.getElementById("map");
  if (!box || typeof L === "undefined") { return; }
  var points = JSON.parse(document.getElementById("points").textContent || "[]");
  var tiles = JSON.parse(document.getElementById("tiles").textContent || "{}");
  var map = L.map(box, { keyboard: true });
  if (tiles.url) {
    L.tileLayer(tiles.url, { maxZoom: 19, attribution: tiles.attribution || "" }).addTo(map);
  } else {
    box.classList.add("no-tiles");
    var note = L.control({ position: "bottomleft" });
    note.onAdd = function () {
      var div = L.DomUtil.create("div", "map-note");
      div.textContent = box.getAttribute("data-no-tiles");
      return div;
    };
    note.addTo(map);
  }
  var colours = { "new": "#b3261e", reviewed: "#8a5a00", forwarded: "#0b5394",
                  in_masterplan: "#5b2c83", resolved: "#1e6b2f", rejected: "#555555" };
  var bounds = [];
  points.forEach(function (p) {
    var marker = L.circleMarker([p.lat, p.lon], {
      radius: 8, weight: 2, color: "#ffffff", fillColor: colours[p.status] || "#333333", fillOpacity: 0.9
    }).addTo(map);
    var content = document.createElement("div");
    var title = document.createElement(p.href ? "a" : "strong");
    if (p.href) { title.href = p.href; }
    title.textContent = p.code;
    var label = document.createElement("div");
    label.textContent = p.label;
    content.appendChild(title);
    content.appendChild(label);
    marker.bindPopup(content);
    marker.bindTooltip(p.code);
    bounds.push([p.lat, p.lon]);
  });
  if (bounds.length) {
    map.fitBounds(bounds, { padding: [24, 24], maxZoom: 15 });
  } else {
    map.setView([-7.65, 111.33], 11);
  }
}());
