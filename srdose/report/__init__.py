"""Reports: ``srdose report survey | drl | qa``.

* :mod:`srdose.report.survey` — the UK national dose-survey submission (CSV per unit and modality) and its
  HTML report;
* :mod:`srdose.report.drl` — local and national-style DRLs after ICRP 135;
* :mod:`srdose.report.qa` — the physics QA review of one unit;
* :mod:`srdose.report.stats` — the statistics, pure numpy functions;
* :mod:`srdose.report.plots`, :mod:`srdose.report.render` — matplotlib (Agg) figures embedded as PNG, Jinja
  templates of ``srdose/templates`` rendered to self-contained HTML that prints on A4, tables as CSV and XLSX;
* :mod:`srdose.report.build` — puts them together; data come from :mod:`srdose.store.reports`, the only
  module of the reports that knows SQL.
"""
