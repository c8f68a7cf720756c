"""Synthetic mammography dose objects for tests, demos and benchmarks.

Realistic, standard-conformant X-Ray Radiation Dose SRs (and MG image
headers) imitating the structure and quirks of five vendors' mammography
units.  Everything is invented: patients, units, institutions.  The same
seed gives the same files byte for byte.

Typical use::

    from srdose.synth import generate
    paths = generate("hologic", 200, "out/", seed=1, units=3)

or, in memory::

    import numpy as np
    from srdose.synth import plan_study, build_study_rdsr, build_mg_images
    study = plan_study("ge", np.random.default_rng(5), unit=0, kind="2D")
    sr = build_study_rdsr(study=study)          # pydicom Dataset
    images = build_mg_images(study=study)       # same Irradiation Event UIDs

Vendor flavours (:data:`VENDORS`)
--------------------------------
``hologic``
    Selenia Dimensions: identity only in the header, 113745 detector flag,
    111650 filter type, SNM3 view codes, laterality on "Anatomical
    structure", reference point 113865 (4.2 cm breast), W/Rh, W/Ag, DBT
    W/Al 0.7 mm -7.4° to 7.6°, rare 20 kV events with zero AGD/HVL/K,
    private grid code ``gridin/99HOLX``.
``ge``
    Senographe Pristina (Senographe Essential on every third unit): full
    observer context, Rh/Ag (Mo/Mo thin; Mo/Mo, Mo/Rh, Rh/Rh on Essential),
    a ~2 mA pre-pulse and a main pulse per 2D exposure with per-pulse kV,
    mA and width, no µAs item, two filter containers without thickness;
    DBT = pre-pulse + 9 projections over 25°.
``giotto``
    IMS Giotto Class: Explicit VR Big Endian, anode under 113632, µAs per
    projection in ``uA.s`` (11 projections, the first about half), one
    filter container per pulse, laterality on Target Region.
``siemens``
    Mammomat Revelation / Inspiration, standard TID 10003 in SRT codes;
    DBT events report kV/mA but time and µAs of one projection (25
    projections, 50° sweep).
``fujifilm``
    Amulet Innovality, standard TID 10003 in SCT codes, W/Rh 2D and
    W/Al DBT (15 projections, ±7.5° or ±20°), exposure index items.
"""

from .generate import (
    MANIFEST_NAME,
    StudyFiles,
    generate,
    identifiers_of,
    study_rng,
    write_study_with_images,
)
from .mg import build_mg_image, build_mg_images
from .model import Event, Patient, Pulse, Study
from .plan import plan_study
from .rdsr import build_study_rdsr, encode_study_rdsr
from .vendors import VENDORS, Unit, get_profile, make_unit

__all__ = [
    "VENDORS",
    "MANIFEST_NAME",
    "Event",
    "Patient",
    "Pulse",
    "Study",
    "StudyFiles",
    "Unit",
    "build_mg_image",
    "build_mg_images",
    "build_study_rdsr",
    "encode_study_rdsr",
    "generate",
    "get_profile",
    "identifiers_of",
    "make_unit",
    "plan_study",
    "study_rng",
    "write_study_with_images",
]
