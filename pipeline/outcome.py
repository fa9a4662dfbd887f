"""How a pipeline run ends, in words and exit codes a scheduler and a person both read.

`coldstart pipeline` exits with one of these codes and writes a summary (JSON, see
`RunSummary`) to `--summary FILE` and to its run folder; the scheduler stores it.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    PUBLISHED = "published"  # a new version passed the gate and is current
    REFUSED = "refused"  # the candidate was worse than current beyond the tolerance; current kept
    FAILED = "failed"  # an error stopped the run; current kept
    BUSY = "busy"  # another run holds the registry's pipeline lock; nothing done


EXIT_CODES: dict[Outcome, int] = {
    Outcome.PUBLISHED: 0,
    Outcome.FAILED: 1,
    Outcome.REFUSED: 3,
    Outcome.BUSY: 75,  # EX_TEMPFAIL: try again later
}
OUTCOME_OF_EXIT_CODE = {code: outcome for outcome, code in EXIT_CODES.items()}
