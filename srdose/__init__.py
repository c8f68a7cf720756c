"""srdose: breast-screening radiation dose from DICOM dose reports.

A dataset travels receive → spool → parse → store → recalculate → report;
each stage is one module or subpackage of this package.
"""

__version__ = "0.1.0"
