"""The quality checks on real speech, as a table: espeak-ng's clean clip and its degraded copies
(the speech tests' own) through `ttsopt.measure.quality.score`, with the baseline (the clean
clip) and a reference clip of the same voice, and the time each scoring took.

    .venv/bin/python scripts/quality-table.py
"""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_quality_speech as speech  # noqa: E402

from ttsopt.measure import quality  # noqa: E402

COLUMNS = (("speech_s", 2), ("trailing_silence_s", 3), ("ends_in_speech", 0), ("letters_per_speech_s", 1),
           ("log_mel_distance_db", 1), ("pesq_wb", 2), ("stoi", 3), ("word_error_rate", 3), ("voice_similarity", 3),
           ("mos", 2))


def cell(metric, digits: int) -> str:
    if metric is None or metric.value is None:
        return "–"
    if isinstance(metric.value, bool):
        return "yes" if metric.value else "no"
    return f"{metric.value:.{digits}f}"


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="ttsopt-quality-"))
    clips = speech.degraded_clips(folder)
    reference = (speech.speak("The quick brown fox jumps over the lazy dog, twice.", folder / "ref.wav"), speech.SR)
    quality.score(clips["clean"], speech.SR, text=speech.TEXT, reference=reference)  # models loaded once, untimed
    print("| clip | " + " | ".join(name for name, _ in COLUMNS) + " | flags | scoring s | clip s |")
    print("|---" * (len(COLUMNS) + 4) + "|")
    for name, wav in clips.items():
        start = time.perf_counter()
        scores = quality.score(wav, speech.SR, text=speech.TEXT, baseline=clips["clean"], reference=reference)
        took = time.perf_counter() - start
        cells = [cell(scores.get(key), digits) for key, digits in COLUMNS]
        flags = "; ".join(quality.problems(scores)) or "–"
        print(f"| {name} | {' | '.join(cells)} | {flags} | {took:.2f} | {len(wav) / speech.SR:.2f} |")
    sources = {key: scores[key].source for key in ("speech_s", "word_error_rate", "voice_similarity", "mos")}
    print("\n".join(f"{key}: {source}" for key, source in sources.items()))


if __name__ == "__main__":
    main()
