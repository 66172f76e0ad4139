#!/usr/bin/env python3
"""Placeholder until docs/traceability.md exists (issue 8): passes when the file is absent."""
import pathlib, sys
if not pathlib.Path("docs/traceability.md").exists():
    print("traceability: docs/traceability.md not written yet")
    sys.exit(0)
