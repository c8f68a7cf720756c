"""Reports: ``srdose report survey | drl | qa`` and ``srdose qc``, one module each, holding the report's
tables, figures and its ``build_*`` function (which returns a :class:`srdose.report.common.Built`):

* :mod:`srdose.report.survey` — the UK national dose-survey submission (CSV per unit and modality) and its
  HTML report;
* :mod:`srdose.report.drl` — local and national-style DRLs after ICRP 135;
* :mod:`srdose.report.qa` — the physics QA review of one unit;
* :mod:`srdose.report.phantom` — the phantom QC: equivalent-breast MGD of PMMA exposures;

and what they share:

* :mod:`srdose.report.common` — masks and labels over the event columns, the build's outcome;
* :mod:`srdose.report.stats` — the statistics, pure numpy functions;
* :mod:`srdose.report.plots`, :mod:`srdose.report.render` — matplotlib (Agg) figures embedded as PNG, Jinja
  templates of ``srdose/templates`` rendered to self-contained HTML that prints on A4, tables as CSV and XLSX.

Data come from :mod:`srdose.store.reports`, the only module of the reports that knows SQL.
"""
