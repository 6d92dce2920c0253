"""Artifacts: results on disk, the export ZIP, deletion certificates and their keys, letters."""
