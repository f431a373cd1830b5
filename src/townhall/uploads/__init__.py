"""Uploads (issue 24): a file is accepted at once into quarantine, scanned by a worker group,
served only once clean, and its owner is told the result. See README.md.

Other modules reach it through `townhall.uploads.events` (topic `uploads`) and its facade.
"""
