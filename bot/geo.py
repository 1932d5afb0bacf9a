"""Where a submission is, as far as what leaves the desk may say.

- Coordinates are rounded to PUBLIC_DECIMALS (3 decimals: about 110 m north-south, 110 m
  east-west at Magetan's latitude) in every export except the internal one (issue 12.5):
  exact GPS would point at a resident's house on a public map.
- Kecamatan centroids come from a small packaged file (bot/data/magetan_kecamatan.json):
  approximate positions of each kecamatan's seat, not boundaries, not surveyed (errors of
  a kilometre or more are likely; replace them with official data when available). A submission without GPS
  is placed at its kecamatan's centroid, flagged approximate; a GPS point without a
  kecamatan is given the nearest centroid's (nearest-seat, so it can be wrong within a few
  kilometres of a border; polygons would fix that and can come with an AREAS_GEOJSON
  setting later).
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources

PUBLIC_DECIMALS = 3
# A point farther than this from every seat is outside the regency: no kecamatan guessed.
NEAREST_MAX_KM = 15.0
_KM_PER_DEGREE = 111.32


def public_coordinate(value: float | None) -> float | None:
    """A coordinate as published: rounded to PUBLIC_DECIMALS."""
    return None if value is None else round(value, PUBLIC_DECIMALS)


def osm_url(lat: float, lon: float) -> str:
    """An OpenStreetMap link to a (rounded) point, with a marker."""
    return (
        f"https://www.openstreetmap.org/?mlat={lat:.{PUBLIC_DECIMALS}f}&mlon={lon:.{PUBLIC_DECIMALS}f}"
        f"#map=16/{lat:.{PUBLIC_DECIMALS}f}/{lon:.{PUBLIC_DECIMALS}f}"
    )


class Centroids:
    """Kecamatan name -> (latitude, longitude) of its seat."""

    def __init__(self, points: dict[str, tuple[float, float]], source: str = ""):
        self.points = dict(points)
        self.source = source
        self._folded = {k.casefold(): v for k, v in self.points.items()}
        self._cache: dict[tuple[float, float], str | None] = {}

    @classmethod
    @functools.cache
    def packaged(cls) -> Centroids:
        data = json.loads(resources.files("bot").joinpath("data/magetan_kecamatan.json").read_text("utf-8"))
        return cls(
            {name: (float(lat), float(lon)) for name, (lat, lon) in data["areas"].items()}, data.get("source", "")
        )

    def centroid(self, area: str | None) -> tuple[float, float] | None:
        if not area:
            return None
        return self._folded.get(area.casefold())

    def nearest(self, lat: float, lon: float) -> str | None:
        """The kecamatan whose seat is nearest (within NEAREST_MAX_KM), else None.

        Cached per rounded point: a million-row export asks about a few thousand places."""
        key = (round(lat, PUBLIC_DECIMALS), round(lon, PUBLIC_DECIMALS))
        if key in self._cache:
            return self._cache[key]
        scale = math.cos(math.radians(lat))
        best, best_d = None, NEAREST_MAX_KM**2
        for name, (clat, clon) in self.points.items():
            d = ((lat - clat) * _KM_PER_DEGREE) ** 2 + ((lon - clon) * _KM_PER_DEGREE * scale) ** 2
            if d < best_d:
                best, best_d = name, d
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[key] = best
        return best
