"""Sigma import: Sigma rules (parsed by pySigma) to Sentinel rule tables. Pure: no files, no network.

``sentinel rules import-sigma`` (sentinel/cli/sigma_cmd.py) reads and writes the files; this package only
turns pySigma's parsed rules into the dicts the TOML writer writes, or says why it cannot.
"""

from sentinel.sigma.convert import SigmaImportError, convert_collection

__all__ = ["SigmaImportError", "convert_collection"]
