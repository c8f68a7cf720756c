"""Factor sets: the g, c, s and T tables a recalculation uses, with provenance.

A :class:`FactorSet` is what :mod:`srdose.physics.dance` interpolates. Two
kinds exist:

``bundled``
    Published g (Dance et al. 2000) and s (Dance et al. 2000 for Mo/Mo,
    Mo/Rh, Rh/Rh, Rh/Al, W/Rh; Dance et al. 2009 for W/Ag) from the public
    copy in ``srdose/physics/data/dance_public_factors.json`` (with its
    provenance); from srdose's own Monte Carlo tables in
    ``srdose/physics/tables/`` (columns described in that folder's
    README.md): g beyond the published table (``g_factors.csv``, used only
    where the published one does not reach), c for typical breasts
    (``c_typical.csv``), the s the papers' public text lacks (W/Al, Rh/Ag,
    Mo/Ag: ``s_factors.csv``) and t(θ) per beam for the tomosynthesis T of
    each event's own sweep (``dbt_t_theta.csv``). A table that is not there
    is *missing*: the events that need it are flagged ``missing_factor:...``
    and get no MGD. Nothing is filled in.

``user``
    A CSV a physicist writes, e.g. from the national factor sheet they hold
    (format below; template in ``sample_data/physics/factor_set_template.csv``).

User factor-set CSV format
--------------------------
Lines starting with ``#`` are comments, except ``# name: ...``,
``# version: ...`` and ``# source: ...`` (name and version required). Then
a header and one row per tabulated value::

    # name: UK-protocol-sheet
    # version: 2015-1
    # source: typed from the national factor sheet held by the physics service
    factor,key,hvl_mm_al,thickness_cm,value
    g,,0.30,2,0.390
    c,50-64,0.30,2,0.885
    s,W/Rh,,,1.042
    s,W/Al:0.7,,5,1.05
    T,hologic,,5,0.97

``factor``
    ``g`` (50 % glandular breast), ``c`` (typical breast for the age group),
    ``s`` (spectrum), ``T`` (DBT sweep).
``key``
    g: empty. c: ``40-49`` or ``50-64``. s: ``TARGET/FILTER`` with an
    optional ``:FILTER_MM`` (``W/Al:0.7``). T: the system's manufacturer
    (``hologic``, ``ge``, ``siemens``, ``giotto``, ``fujifilm``; a longer
    name such as "Hologic Selenia Dimensions" is matched on its maker).
``hvl_mm_al``, ``thickness_cm``
    The table axes; leave a column empty when the factor does not depend on
    it. For one (factor, key) the rows must fill a complete grid (every HVL
    with every thickness).
``value``
    The factor.

Interpolation: linear in HVL, linear in ln(g) against thickness for g,
bilinear for c, s and T, linear in angle for t(θ); outside every table
there is no value, only a flag naming the factor and axis.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srdose import __version__
from srdose.physics.dance import AGE_GROUPS, Grid, _axis_position
from srdose.physics.io import (
    file_bytes,
    parse_commented_csv,
    public_factors_bytes,
    table_bytes,
)

FACTORS = ("g", "c", "s", "T")

#: Cells of the public g copy that remain doubtful (the copy's own note):
#: flagged wherever an interpolation uses them, used as published. The HVL
#: 0.50 row from 7 cm up once looked low against the Monte Carlo, but an
#: independent transcription of the same paper agrees with it within 0.5 %:
#: it is taken as the published value and not flagged.
SUSPECT_G_CELLS = (
    (0.60, 2.0),  # 0.587, ~1.5-2 % low against smooth models
    (0.55, 5.0),  # 0.287, ~1-2 % high against smooth models
)


class FactorSetError(ValueError):
    """A factor-set file that cannot be used; the message names the problem."""


def system_key(text: str | None) -> str:
    """The maker a DBT T table belongs to, from a manufacturer or system name."""
    t = (text or "").strip().lower()
    for pattern, key in (
        (r"hologic", "hologic"),
        (r"^ge\b|general electric|senographe", "ge"),
        (r"siemens", "siemens"),
        (r"\bims\b|giotto", "giotto"),
        (r"fuji", "fujifilm"),
    ):
        if re.search(pattern, t):
            return key
    return t


@dataclass
class SpectrumFactor:
    """s for one target/filter (optionally one filter thickness)."""

    target: str
    filter: str
    filter_mm: float | None
    grid: Grid


@dataclass
class TTheta:
    """t(theta) of one beam: values over (HVL, thickness, |angle|) (Dance et al. 2011 t)."""

    target: str
    filter: str
    filter_mm: float | None
    hvl: np.ndarray
    thickness: np.ndarray
    angles: np.ndarray
    values: np.ndarray  # (len(hvl), len(thickness), len(angles))
    rel_unc_max: float = 0.0

    def grids(self) -> list[Grid]:
        """One (HVL x thickness) grid per angle node."""
        return [Grid(self.hvl, self.thickness, self.values[:, :, k]) for k in range(len(self.angles))]

    def at_nodes(self, hvl, t_cm, n_nodes: int):
        """t at the first ``n_nodes`` angle nodes for each (HVL, thickness), bilinear (one axis search
        for all nodes); and the masks of inputs outside the HVL and thickness axes (their t is NaN)."""
        hvl = np.asarray(hvl, dtype=float)
        t_cm = np.asarray(t_cm, dtype=float)
        i, wi, ch = _axis_position(self.hvl, hvl)
        j, wj, ct = _axis_position(self.thickness, t_cm)
        v = self.values[:, :, :n_nodes]
        wi, wj = wi[:, None], wj[:, None]
        lo = v[i, j] + wj * (v[i, j + 1] - v[i, j])
        hi = v[i + 1, j] + wj * (v[i + 1, j + 1] - v[i + 1, j])
        out = lo + wi * (hi - lo)
        bad = ch | ct | np.isnan(hvl) | np.isnan(t_cm)
        out[bad] = np.nan
        return out, ch, ct


@dataclass
class FactorSet:
    """Everything a recalculation needs from the factor tables.

    ``missing`` maps a table name (``c``, ``s:Rh/Ag``, ``T:fujifilm`` ...)
    to the reason it is absent; the engine turns those into flags.
    """

    name: str
    version: str
    kind: str  # bundled | user
    sha256: str
    g: Grid | None = None
    #: g beyond the published table (Monte Carlo), used only where ``g`` does not reach
    g_ext: Grid | None = None
    c: dict = field(default_factory=dict)  # age group -> Grid
    s: list = field(default_factory=list)  # [SpectrumFactor]
    T: dict = field(default_factory=dict)  # system key -> Grid (a user set's T per system)
    t_theta: list = field(default_factory=list)  # [TTheta]: T computed from the event's own sweep
    #: c against glandularity: (glandularity nodes, one HVL x thickness Grid per node); phantom QC
    c_glandularity: tuple | None = None
    sources: dict = field(default_factory=dict)  # table -> provenance text
    missing: dict = field(default_factory=dict)
    content: str | None = None  # the user CSV as loaded (stored with results)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def spectrum_factor(
        self, target: str | None, filt: str | None, filter_mm: float | None
    ) -> tuple[SpectrumFactor | None, str]:
        """s table for a beam and a note ('' or 'nearest_filter_mm')."""
        t, f = (target or "").upper(), (filt or "").upper()
        cands = [sf for sf in self.s if sf.target.upper() == t and sf.filter.upper() == f]
        if not cands:
            return None, ""
        if len(cands) == 1:
            return cands[0], ""
        if filter_mm is not None and np.isfinite(filter_mm):
            exact = [sf for sf in cands if sf.filter_mm is not None and abs(sf.filter_mm - filter_mm) < 1e-3]
            if exact:
                return exact[0], ""
            with_mm = [sf for sf in cands if sf.filter_mm is not None]
            if with_mm:
                return min(with_mm, key=lambda sf: abs(sf.filter_mm - filter_mm)), "nearest_filter_mm"
        generic = [sf for sf in cands if sf.filter_mm is None]
        if generic:
            return generic[0], ""
        return cands[0], "nearest_filter_mm"

    def t_theta_for(self, target: str | None, filt: str | None, filter_mm: float | None) -> tuple[TTheta | None, str]:
        """t(theta) table for a beam and a note ('' or 'nearest_filter_mm')."""
        t, f = (target or "").upper(), (filt or "").upper()
        cands = [tt for tt in self.t_theta if tt.target.upper() == t and tt.filter.upper() == f]
        if not cands:
            return None, ""
        if filter_mm is not None and np.isfinite(filter_mm):
            best = min(cands, key=lambda tt: abs((tt.filter_mm or 0.0) - filter_mm))
            return best, "" if abs((best.filter_mm or 0.0) - filter_mm) < 1e-3 else "nearest_filter_mm"
        return cands[0], "" if len(cands) == 1 else "nearest_filter_mm"

    def provenance(self) -> dict:
        """What to store beside every result this set produced."""
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "sha256": self.sha256,
            "sources": self.sources,
            "missing": self.missing,
            "tables": {
                "g": None if self.g is None else self.g.range_text(),
                "g_extension": None if self.g_ext is None else self.g_ext.range_text(),
                "c": {k: v.range_text() for k, v in self.c.items()},
                "s": {
                    f"{sf.target}/{sf.filter}" + (f":{sf.filter_mm:g}" if sf.filter_mm else ""): sf.grid.range_text()
                    for sf in self.s
                },
                "T": {k: v.range_text() for k, v in self.T.items()},
                "t_theta": {
                    f"{t.target}/{t.filter}:{t.filter_mm:g}": (
                        f"HVL {t.hvl[0]:.3g}-{t.hvl[-1]:.3g} mm Al, "
                        f"thickness {t.thickness[0]:g}-{t.thickness[-1]:g} cm, "
                        f"angle 0-{t.angles[-1]:g} deg"
                    )
                    for t in self.t_theta
                },
            },
            "s_policy": S_POLICY if self.kind == "bundled" else "as given in the user factor set",
        }


# --- CSV helpers ---------------------------------------------------------------------------


def _num(text: str | None) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    return float(text)


def _grid_from_points(points: dict, log_thickness: bool, source: str, what: str, suspect_cells=()) -> Grid:
    """A Grid from {(hvl or None, thickness or None): value}; must be a full grid."""
    hvls = sorted({h for h, _ in points if h is not None})
    ts = sorted({t for _, t in points if t is not None})
    if any(h is None for h, _ in points) and hvls:
        raise FactorSetError(f"{what}: some rows give an HVL and some do not")
    if any(t is None for _, t in points) and ts:
        raise FactorSetError(f"{what}: some rows give a thickness and some do not")
    values = np.empty((max(len(hvls), 1), max(len(ts), 1)))
    suspect = np.zeros(values.shape, dtype=bool)
    for i, h in enumerate(hvls or [None]):
        for j, t in enumerate(ts or [None]):
            if (h, t) not in points:
                raise FactorSetError(
                    f"{what}: no value for HVL {h} mm Al, thickness {t} cm (the rows must fill a complete grid)"
                )
            values[i, j] = points[(h, t)]
            suspect[i, j] = any(abs((h or 0) - sh) < 1e-9 and abs((t or 0) - st) < 1e-9 for sh, st in suspect_cells)
    try:
        return Grid(
            np.array(hvls) if hvls else None,
            np.array(ts) if ts else None,
            values,
            log_thickness=log_thickness,
            suspect=suspect if suspect.any() else None,
            source=source,
        )
    except ValueError as exc:
        raise FactorSetError(f"{what}: {exc}") from exc


def _parse_beam(key: str) -> tuple[str, str, float | None]:
    m = re.fullmatch(r"\s*([A-Za-z]{1,2})\s*/\s*([A-Za-z]{1,2})\s*(?::\s*([0-9.]+))?\s*", key or "")
    if not m:
        raise FactorSetError(f"s key {key!r}: expected TARGET/FILTER or TARGET/FILTER:MM, e.g. W/Al:0.7")
    return m.group(1).capitalize(), m.group(2).capitalize(), (float(m.group(3)) if m.group(3) else None)


# --- user sets ---------------------------------------------------------------------------


def load_csv(source) -> FactorSet:
    """Load a user factor set from a path or from the CSV text itself."""
    raw: bytes | None
    if isinstance(source, str) and "\n" in source:
        raw = source.encode("utf-8")
        where = "factor set"
    elif isinstance(source, (str, Path)) and (raw := file_bytes(source)) is not None:
        where = str(source)
    else:
        raise FactorSetError(f"factor set file {source} does not exist")
    text = raw.decode("utf-8-sig")
    table = parse_commented_csv(text)
    meta, rows = table.meta, table.rows
    for key in ("name", "version"):
        if not meta.get(key):
            raise FactorSetError(f"{where}: a '# {key}: ...' line is required")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", meta["name"]) or meta["name"].lower() == "bundled":
        raise FactorSetError(
            f"{where}: name {meta['name']!r} must be letters, digits, '.', '_' or '-' and not 'bundled'"
        )
    need = {"factor", "key", "hvl_mm_al", "thickness_cm", "value"}
    if not rows or not need <= set(rows[0]):
        raise FactorSetError(f"{where}: header must be {','.join(sorted(need))}")
    tables: dict[tuple, dict] = {}
    for n, row in enumerate(rows, start=2):
        factor = (row["factor"] or "").strip()
        if factor not in FACTORS:
            raise FactorSetError(f"{where}: row {n}: factor {factor!r} is not one of {', '.join(FACTORS)}")
        try:
            h, t, v = _num(row["hvl_mm_al"]), _num(row["thickness_cm"]), _num(row["value"])
        except ValueError as exc:
            raise FactorSetError(f"{where}: row {n}: {exc}") from exc
        if v is None or not np.isfinite(v) or v <= 0:
            raise FactorSetError(f"{where}: row {n}: value must be a positive number")
        key = (row["key"] or "").strip()
        if factor == "g" and key:
            raise FactorSetError(f"{where}: row {n}: g takes no key")
        if factor == "c" and key not in AGE_GROUPS:
            raise FactorSetError(f"{where}: row {n}: c key must be one of {', '.join(AGE_GROUPS)}")
        if factor == "s":
            _parse_beam(key)
        if factor == "T":
            if not key:
                raise FactorSetError(f"{where}: row {n}: T needs the system (e.g. hologic)")
            key = system_key(key)
        cell = (h, t)
        cells = tables.setdefault((factor, key), {})
        if cell in cells:
            raise FactorSetError(f"{where}: row {n}: {factor} {key} HVL {h} thickness {t} given twice")
        cells[cell] = v
    src = meta.get("source", "") or f"user factor set {meta['name']}"
    fs = FactorSet(meta["name"], meta["version"], "user", hashlib.sha256(raw).hexdigest(), content=text)
    for (factor, key), points in tables.items():
        what = f"{factor}{' ' + key if key else ''}"
        grid = _grid_from_points(points, factor == "g", src, what)
        if factor == "g":
            fs.g = grid
        elif factor == "c":
            fs.c[key] = grid
        elif factor == "s":
            target, filt, mm = _parse_beam(key)
            fs.s.append(SpectrumFactor(target, filt, mm, grid))
        else:
            fs.T[key] = grid
        fs.sources[what] = src
    if fs.g is None:
        fs.missing["g"] = f"the factor set {fs.label} has no g rows"
    for grp in AGE_GROUPS:
        if grp not in fs.c:
            fs.missing[f"c:{grp}"] = f"the factor set {fs.label} has no c rows for ages {grp}"
    return fs


# --- the bundled set ----------------------------------------------------------------------

#: The published s of the public copy and the paper each comes from
#: (dance_public_factors.json, s_factor.sources; single secondary copy,
#: table numbers not given by it).
PUBLISHED_S_SOURCE = {
    "Mo/Mo": "Dance et al. 2000 (Phys Med Biol 45:3225), via the public copy in factors.json (single-source)",
    "Mo/Rh": "Dance et al. 2000 (Phys Med Biol 45:3225), via the public copy in factors.json (single-source)",
    "Rh/Rh": "Dance et al. 2000 (Phys Med Biol 45:3225), via the public copy in factors.json (single-source)",
    "Rh/Al": "Dance et al. 2000 (Phys Med Biol 45:3225), via the public copy in factors.json (single-source)",
    "W/Rh": "Dance et al. 2000 (Phys Med Biol 45:3225), via the public copy in factors.json (single-source)",
    "W/Ag": "Dance, Young & van Engen 2009 (Phys Med Biol 54:4361) abstract: s = 1.042 for W with 50-75 um Ag",
}

#: Monte Carlo tables the bundled set takes from srdose/physics/tables/.
MC_TABLES = {
    "g": "g_factors.csv",
    "c": "c_typical.csv",
    "s": "s_factors.csv",
    "t": "dbt_t_theta.csv",
    "cg": "c_factors.csv",
}

#: Which s the bundled set uses, stated once (shown with every result's provenance).
S_POLICY = (
    "published constants where the papers give them (Mo/Mo, Mo/Rh, Rh/Rh, Rh/Al, W/Rh: Dance et al. "
    "2000; W/Ag: Dance et al. 2009), whatever the kV and thickness; the Monte Carlo s per spectrum "
    "(kV via HVL) and thickness for every other beam (W/Al, Rh/Ag, Mo/Ag), from s_factors.csv"
)


def load_bundled(tables_dir: Path | None = None, public_json: Path | None = None) -> FactorSet:
    """The factor set srdose ships (see the module docstring).

    Parameters
    ----------
    tables_dir
        Folder of the Monte Carlo CSV tables (default: the package's
        ``srdose/physics/tables/``).
    public_json
        The copy of the published tables (default: the package's
        ``srdose/physics/data/dance_public_factors.json``).
    """
    raw_json = public_factors_bytes(public_json)
    if raw_json is None:
        raise FactorSetError(
            "the bundled published factors (srdose/physics/data/dance_public_factors.json) are not installed"
        )
    doc = json.loads(raw_json)
    public = doc.get("factors", doc)
    digest = hashlib.sha256(raw_json)
    mc: dict[str, str | None] = {}
    for key, name in MC_TABLES.items():
        data = table_bytes(name, tables_dir)
        mc[key] = None if data is None else data.decode("utf-8")
        digest.update(name.encode() + b"\0" + (data or b""))
    sha = digest.hexdigest()
    fs = FactorSet("bundled", f"{__version__}+{sha[:10]}", "bundled", sha)
    where_tables = str(tables_dir) if tables_dir else "srdose/physics/tables"

    # g: Dance et al. 2000, 50 % glandular breast, 2-11 cm (public copy, single-source)
    pg = public["g_factor"]
    points = {
        (float(h), float(t)): float(pg["values_rows_hvl_cols_thickness"][i][j])
        for i, h in enumerate(pg["hvl_mm_al"])
        for j, t in enumerate(pg["thickness_cm"])
    }
    fs.g = _grid_from_points(
        points,
        True,
        "Dance et al. 2000 g table (public copy, single-source; suspect cells flagged)",
        "g",
        SUSPECT_G_CELLS,
    )
    fs.sources["g"] = f"{pg.get('intended_primary', 'Dance2000')}; {pg.get('source', '')}"

    # g beyond the published table: srdose Monte Carlo (used only outside the published range)
    if mc["g"] is not None:
        rows = parse_commented_csv(mc["g"]).rows
        points = {
            (round(float(r["hvl_mm_al"]), 4), float(r["thickness_cm"])): float(r["g"])
            for r in rows
            if _num(r.get("g")) is not None
        }
        if points:
            fs.g_ext = _grid_from_points(points, True, f"srdose Monte Carlo {MC_TABLES['g']}", "g extension")
            fs.g_ext.meta["rel_unc_max"] = max(float(r["g_rel_unc"] or 0) for r in rows)
            fs.sources["g extension"] = (
                f"srdose Monte Carlo ({MC_TABLES['g']}) outside the published "
                f"{fs.g.range_text()}; agreement with the published cells in the "
                "validation dossier"
            )

    # s: published values where the public text has them
    for beam, value in public["s_factor"]["values"].items():
        target, filt = beam.split("/")
        fs.s.append(
            SpectrumFactor(
                target,
                filt,
                None,
                Grid(None, None, np.array([[float(value)]]), source=PUBLISHED_S_SOURCE.get(beam, "")),
            )
        )
        fs.sources[f"s {beam}"] = PUBLISHED_S_SOURCE.get(beam, "factors.json s_factor")
    published_beams = {tuple(b.split("/")) for b in public["s_factor"]["values"]}

    # c: Monte Carlo, typical breasts by age group
    if mc["c"] is None:
        for grp in AGE_GROUPS:
            fs.missing[f"c:{grp}"] = (
                f"missing factor table c ({where_tables}/{MC_TABLES['c']}: the Monte Carlo c table is not shipped yet)"
            )
    else:
        rows = parse_commented_csv(mc["c"]).rows
        by_age: dict[str, dict] = {}
        for r in rows:
            v = _num(r.get("c"))
            if v is None:
                continue
            by_age.setdefault(r["age_group"].strip(), {})[(float(r["hvl_mm_al"]), float(r["thickness_cm"]))] = v
        for grp in AGE_GROUPS:
            if grp in by_age:
                fs.c[grp] = _grid_from_points(by_age[grp], False, f"srdose Monte Carlo {MC_TABLES['c']}", f"c {grp}")
                fs.c[grp].meta["rel_unc_max"] = max(float(r["c_rel_unc"] or 0) for r in rows)
                fs.sources[f"c {grp}"] = (
                    f"srdose Monte Carlo ({MC_TABLES['c']}), typical glandularity of Dance et al. 2000 (public copy)"
                )
            else:
                fs.missing[f"c:{grp}"] = f"missing factor table c for ages {grp} in {MC_TABLES['c']}"

    # s the papers' public text lacks: Monte Carlo, by HVL (from kV) and thickness
    if mc["s"] is None:
        fs.missing["s:mc"] = (
            f"missing factor table s for W/Al, Rh/Ag, Mo/Ag ({where_tables}/{MC_TABLES['s']}: "
            "the Monte Carlo s table is not shipped yet)"
        )
    else:
        rows = parse_commented_csv(mc["s"]).rows
        beams: dict[tuple, dict] = {}
        for r in rows:
            target, filt = r["target"].strip().capitalize(), r["filter"].strip().capitalize()
            if (target, filt) in published_beams:
                continue  # the published value wins
            v = _num(r.get("s"))
            beam = (target, filt, _num(r.get("filter_mm")))
            beams.setdefault(beam, {}).setdefault(float(r["kv"]), []).append(
                (float(r["hvl_mm_al"]), float(r["thickness_cm"]), v)
            )
        for (target, filt, mm), by_kv in beams.items():
            points = {}
            for _kv, cells in sorted(by_kv.items()):
                if any(v is None for _, _, v in cells):
                    continue  # a kV the Monte Carlo could not reference: dropped, the range shrinks
                for h, t, v in cells:
                    points[(round(h, 4), t)] = v
            if not points:
                continue
            grid = _grid_from_points(points, False, f"srdose Monte Carlo {MC_TABLES['s']}", f"s {target}/{filt}")
            grid.meta["rel_unc_max"] = max(float(r["s_rel_unc"] or 0) for r in rows if r["s_rel_unc"])
            grid.meta["monte_carlo"] = True
            fs.s.append(SpectrumFactor(target, filt, mm, grid))
            fs.sources[f"s {target}/{filt}:{mm:g}" if mm else f"s {target}/{filt}"] = (
                f"srdose Monte Carlo ({MC_TABLES['s']})"
            )

    # c against glandularity (phantom QC: the glandularity of the PMMA-equivalent breast)
    if mc["cg"] is not None:
        rows = parse_commented_csv(mc["cg"]).rows
        by_gl: dict[float, dict] = {}
        for r in rows:
            v = _num(r.get("c"))
            if v is not None:
                by_gl.setdefault(float(r["glandularity"]), {})[(float(r["hvl_mm_al"]), float(r["thickness_cm"]))] = v
        nodes = sorted(by_gl)
        fs.c_glandularity = (
            np.array(nodes),
            [_grid_from_points(by_gl[gl], False, f"srdose Monte Carlo {MC_TABLES['cg']}", f"c {gl:g}") for gl in nodes],
        )
        fs.sources["c by glandularity"] = f"srdose Monte Carlo ({MC_TABLES['cg']})"

    # t(theta): Monte Carlo per beam; T is summed over each event's own sweep
    if mc["t"] is None:
        fs.missing["t_theta"] = (
            f"missing factor table t(theta) ({where_tables}/{MC_TABLES['t']}): tomosynthesis events get no MGD"
        )
    else:
        fs.t_theta = _t_theta_tables(mc["t"])
        fs.sources["t(theta)"] = (
            f"srdose Monte Carlo ({MC_TABLES['t']}): t = dose at angle / dose at 0 "
            "degrees (Dance et al. 2011 definition), per beam, HVL, thickness"
        )
    return fs


def _t_theta_tables(text: str) -> list[TTheta]:
    rows = parse_commented_csv(text).rows
    by_beam: dict[tuple, dict] = {}
    for r in rows:
        v = _num(r.get("t"))
        if v is None:
            continue
        key = (r["target"].strip().capitalize(), r["filter"].strip().capitalize(), _num(r.get("filter_mm")))
        by_beam.setdefault(key, {})[(float(r["hvl_mm_al"]), float(r["thickness_cm"]), float(r["angle_deg"]))] = (
            v,
            float(r.get("t_rel_unc") or 0),
        )
    out = []
    for (target, filt, mm), cells in sorted(by_beam.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        hvls = sorted({h for h, _, _ in cells})
        ts = sorted({t for _, t, _ in cells})
        angles = sorted({a for _, _, a in cells})
        values = np.full((len(hvls), len(ts), len(angles)), np.nan)
        for (h, t, a), (v, _) in cells.items():
            values[hvls.index(h), ts.index(t), angles.index(a)] = v
        if np.isnan(values).any():
            raise FactorSetError(f"t(theta) {target}/{filt}: the rows must fill a complete grid")
        out.append(
            TTheta(
                target,
                filt,
                mm,
                np.array(hvls),
                np.array(ts),
                np.array(angles),
                values,
                max(u for _, u in cells.values()),
            )
        )
    return out


def load_pmma_equivalence(public_json: Path | None = None) -> dict:
    """PMMA thickness -> equivalent breast thickness and glandularity (European protocol), with its
    status and source, from the bundled public copy."""
    raw = public_factors_bytes(public_json)
    if raw is None:
        raise FactorSetError("the bundled published factors are not installed")
    doc = json.loads(raw)
    table = doc.get("factors", doc).get("pmma_equivalence") or {}
    if not table.get("rows"):
        raise FactorSetError("the PMMA equivalence table is missing from the bundled published factors")
    return table
