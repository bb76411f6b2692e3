"""One vocabulary for records, tables and reports.

Each is a `StrEnum`, so a member compares equal to the string stored in a record and reads
back from JSON as itself: `Status("ok") is Status.OK`.
"""
from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    NOT_APPLICABLE = "not applicable"


class Role(StrEnum):
    """What a benchmark compares the baseline with."""
    AA = "aa"              # the baseline again: the noise of the design, on this machine
    VARIANT = "variant"    # an optimization (or a composition of them)


class Side(StrEnum):
    """Which of the two things compared a record belongs to."""
    BASELINE = "baseline"
    VARIANT = "variant"


class Design(StrEnum):
    """How a benchmark's replicates are made (see `ttsopt.experiment.designs`)."""
    IN_PROCESS = "in-process"        # both sides in one process, trials interleaved A B B A
    CROSS_PROCESS = "cross-process"  # alternating fresh processes, B V V B ..., one replicate per round


class Phase(StrEnum):
    LOAD = "load"            # model load and variant application, per side and process
    WARMUP = "warmup"        # first calls of a side, excluded from every statistic
    COLD = "cold"            # first call after load in a fresh process: the cold start
    TRIAL = "trial"          # measured steady state
    FIDELITY = "fidelity"    # the variant against the baseline on the same inputs
    EVIDENCE = "evidence"    # what the variant shows of itself after its trials
    STREAM = "stream"        # bench: time to first audio
    BATCH = "batch"          # bench: prompts decoded as one batch


class Stage(StrEnum):
    """The pipeline's timed stages, in the order they run."""
    TEXT_TO_TOKENS = "text_to_tokens"
    CONDITIONING = "conditioning"
    T3_PREFILL = "t3_prefill"
    T3_DECODE = "t3_decode"
    S3GEN_FLOW = "s3gen_flow"
    VOCODER = "vocoder"
    WATERMARK = "watermark"


STAGES = tuple(s.value for s in Stage)

# The run id of a models comparison (`ttsopt models`): its records sit beside a suite's runs but
# are no run of the suite, so the suite's verdict table leaves them out.
MODELS_RUN_ID = "models"


class Verdict(StrEnum):
    FASTER = "faster"
    SLOWER = "slower"
    SMALLER = "less memory"
    LARGER = "more memory"
    NO_CHANGE = "no measurable change"
    INCONCLUSIVE = "inconclusive"              # too few replicates for the noise: shown with n
    NOT_EXERCISED = "not exercised here"       # applied, but its own evidence shows it did nothing
    NEEDS_REAL_WEIGHTS = "needs real weights"  # its claim is about a natural stop; random weights have none
    NOT_APPLICABLE = "not applicable"
    FAILED = "failed"
    NOISE_FLOOR = "noise floor"                # the A/A row
    NOT_COMPARED = "not compared"              # no usable A/A or baseline side to compare with


# Verdicts that state a measured change in one direction or the other.
DIRECTIONAL = frozenset({Verdict.FASTER, Verdict.SLOWER, Verdict.SMALLER, Verdict.LARGER})
