"""Fuzz run report: how many frames reached the venue parsers, under which profile, in how long.

Printed at the end of the session; written as JSON to $FUZZ_REPORT when that is set, so the long mode
(`HYPOTHESIS_PROFILE=long`) leaves a figure for docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import time

from fuzz_mutations import INPUTS, PROFILE

_STARTED = time.monotonic()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    elapsed = time.monotonic() - _STARTED
    line = (f"fuzz profile {PROFILE}: {INPUTS['frames']} generated/mutated frames + {INPUTS['streams']} faulted "
            f"stream replays ({INPUTS['stream_frames']} frames) fed to venue parsers in {elapsed:.0f} s; "
            f"{INPUTS['fast_frames']} of them taken by a venue fast path")
    terminalreporter.write_line(line)
    path = os.environ.get("FUZZ_REPORT")
    if path:
        stats = terminalreporter.stats
        report = {
            "profile": PROFILE,
            "frames": INPUTS["frames"],
            "streams": INPUTS["streams"],
            "stream_frames": INPUTS["stream_frames"],
            "fast_frames": INPUTS["fast_frames"],
            "seconds": round(elapsed, 1),
            "passed": len(stats.get("passed", [])),
            "failed": len(stats.get("failed", [])) + len(stats.get("error", [])),
            "exitstatus": int(exitstatus),
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)
