"""Quality checks of one clip: is it cut off, padded with a tail, clipped, or carrying a constant
tone; how far is it from the baseline's clip; and, with models that ship their weights, does it
say the words, in the voice, and how natural does it sound?

Fidelity (`fidelity`) says a variant's output is *different*; these say what kind of *worse* it
might be, for the failures optimizations cause or are blamed for: a hallucinated tail after the
sentence (too little text for the seconds of speech), a cut-off ending (speech up to the last
sample), a constant vocoder whine (one frequency standing out of its neighbours in almost every
frame), clipping. They read the waveform alone, so they mean the same on random and real weights.

Some checks need a model. The word error rate of an offline recogniser against the text:
pocketsphinx is the recogniser that ships its English model inside its wheel (no download at run
time, which our machines cannot do); jiwer normalises both texts and counts the errors. It is a
weak recogniser: on clean espeak-ng speech its error rate is already about 0.6, so it says
"worse" only for large losses, and it means nothing on random weights' noise. A user who has a
stronger one on disk (a Whisper checkpoint, or any transformers speech-recognition model folder)
names it in `TTSOPT_ASR_MODEL`, and it replaces pocketsphinx; the metric's source names it. The voice is
compared with a reference clip by Resemblyzer's speaker encoder (its weights ship in its wheel
too): the cosine of the two utterance embeddings; with real Chatterbox weights loaded, the
model's own VoiceEncoder gives the voice as T3 hears it (`chatterbox_similarity`). Against a
baseline clip of the same length (the same tokens rendered by both sides) come the intrusive
measures: wideband PESQ and STOI, from the `pesq` and `pystoi` packages, at 16 kHz. Naturalness
is DistillMOS's predicted mean opinion score (1 to 5, no reference needed; its weights ship in its
wheel).

Speech activity, for the tails, pauses and cut-off endings, is silero-vad's neural detector (its
TorchScript model ships in its wheel; run at 16 kHz) when it is installed. Without it, or when
only model-free checks are asked for, it is an energy detector, deliberately simple: 20 ms frames
are speech when they are within `VAD_RANGE_DB` of the clip's loud frames, gaps shorter than a
pause are bridged, and blips shorter than a syllable dropped. The energy detector calls any loud
sound speech (random weights' noise too); silero-vad calls noise and buzz silence. Every metric
names how it was computed (`source`), the timing metrics the detector that found the speech.
"""
from __future__ import annotations

import functools
import io
import json
import os
import re
import warnings
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.errors import UserError

FRAME_S, HOP_S = 0.020, 0.010
VAD_RANGE_DB = 35.0       # speech: within this of the clip's loud frames (95th percentile)
VAD_FLOOR_DBFS = -65.0    # and above this absolute level (digital silence and dither are not speech)
BRIDGE_S = 0.15           # a gap shorter than this inside speech is part of a word, not a pause
MIN_BURST_S = 0.05        # activity shorter than this is a click, not speech
CUT_OFF_S = 0.03          # speech within this of the last sample: the clip may end mid-word
CLIP_LEVEL = 0.999        # |x| at or above this is clipped (float audio in [-1, 1])
CLIP_SHARE_FLAG = 1e-3
# Letters per second of speech: English read aloud runs at about 12-16; far outside, the audio
# holds more (a tail, babble) or less (cut words) than its text.
RATE_LOW, RATE_HIGH = 8.0, 25.0
TONE_FRAME_S = 0.064
TONE_OVER_NEIGHBOURS_DB = 15.0
TONE_NEIGHBOURS_HZ = 300.0
TONE_SHARE_FLAG = 0.8     # one frequency standing out in this share of frames: a constant tone
PAUSE_FLAG_S = 1.0
MEL = {"n_fft": 1024, "hop_length": 256, "n_mels": 80}
ENERGY_VAD = "energy VAD (ttsopt.measure.quality)"


@dataclass(frozen=True)
class Metric:
    value: float | bool | None
    unit: str
    source: str
    flag: str = ""  # a sentence when the value points at a problem, else empty
    note: str = ""  # what a reader may want beside the value (a recogniser's transcript)

    def as_dict(self) -> dict:
        return asdict(self)


def _frame_count(n: int, sr: int, frame_s: float, hop_s: float) -> int:
    frame, hop = max(1, int(frame_s * sr)), max(1, int(hop_s * sr))
    return 1 + (max(n, frame) - frame) // hop


def _frames(wav: np.ndarray, sr: int, frame_s: float, hop_s: float) -> np.ndarray:
    frame, hop = max(1, int(frame_s * sr)), max(1, int(hop_s * sr))
    if len(wav) < frame:
        wav = np.pad(wav, (0, frame - len(wav)))
    count = _frame_count(len(wav), sr, frame_s, hop_s)
    index = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
    return wav[index]


def _runs(mask: np.ndarray, value: bool) -> list[tuple[int, int]]:
    """(start, end) index pairs of the runs of VALUE in MASK."""
    padded = np.concatenate([[False], mask == value, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


VAD_SR = 16_000
SILERO_MISSING = f"{ENERGY_VAD}: silero-vad is not installed (pip install 'ttsopt[quality]')"
DETECTORS = ("auto", "silero", "energy")
_SILERO = []  # silero-vad's TorchScript model, loaded once per process


def silero_source() -> str | None:
    """What silero-vad computes speech activity with here, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"silero-vad {version('silero-vad')} (its TorchScript model in the wheel), 16 kHz"
    except PackageNotFoundError:
        return None


def _silero():
    """silero-vad's model and its function for speech stretches. Importing silero-vad sets torch
    to one thread for the whole process (`torch.set_num_threads(1)` in its model module): the
    count is put back, or every synthesis timed after the first scoring would run on one thread."""
    if not _SILERO:
        import torch
        threads = torch.get_num_threads()
        try:
            from silero_vad import get_speech_timestamps, load_silero_vad
            with warnings.catch_warnings():  # torch 2.11 calls its own torch.jit.load deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                _SILERO.append((load_silero_vad(onnx=False), get_speech_timestamps))
        finally:
            torch.set_num_threads(threads)
    return _SILERO[0]


def detect_speech(wav: np.ndarray, sr: int, detector: str = "auto") -> tuple[np.ndarray, str]:
    """(one bool per 10 ms hop: is this speech, the detector that said so). DETECTOR: "silero",
    "energy", or "auto" (silero-vad when installed, else the energy detector, saying why)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown speech detector {detector!r}: expected one of {', '.join(DETECTORS)}")
    source = silero_source() if detector != "energy" else None
    if source is None:
        if detector == "silero":
            raise RuntimeError(SILERO_MISSING)
        return _energy_activity(wav, sr), SILERO_MISSING if detector == "auto" else ENERGY_VAD
    return _silero_activity(wav, sr), source


def _silero_activity(wav: np.ndarray, sr: int) -> np.ndarray:
    """silero-vad's speech stretches as hops: a hop is speech when its 20 ms frame lies inside one.
    Its own minimum speech and silence lengths are this module's click and pause lengths."""
    import librosa
    import torch

    model, stretches = _silero()
    audio = np.asarray(wav, np.float32)
    if sr != VAD_SR:
        audio = librosa.resample(audio, orig_sr=sr, target_sr=VAD_SR)
    found = stretches(torch.from_numpy(np.ascontiguousarray(audio)), model, sampling_rate=VAD_SR,
                      min_speech_duration_ms=int(MIN_BURST_S * 1000), min_silence_duration_ms=int(BRIDGE_S * 1000))
    count = _frame_count(len(wav), sr, FRAME_S, HOP_S)
    starts = np.arange(count) * HOP_S
    active = np.zeros(count, bool)
    for stretch in found:
        start, end = stretch["start"] / VAD_SR, stretch["end"] / VAD_SR
        active |= (starts >= start - HOP_S / 2) & (starts + FRAME_S <= end + HOP_S / 2)
    return active


def speech_activity(wav: np.ndarray, sr: int, detector: str = "auto") -> np.ndarray:
    """One bool per 10 ms hop: is this speech (see the module's note and `detect_speech`)?"""
    return detect_speech(wav, sr, detector)[0]


def _energy_activity(wav: np.ndarray, sr: int) -> np.ndarray:
    rms = np.sqrt(np.mean(_frames(np.asarray(wav, np.float64), sr, FRAME_S, HOP_S) ** 2, axis=1))
    level = 20 * np.log10(rms + 1e-10)
    loud = np.percentile(level, 95)
    active = (level > loud - VAD_RANGE_DB) & (level > VAD_FLOOR_DBFS)
    for start, end in _runs(active, False):  # bridge short gaps between active stretches
        if start > 0 and end < len(active) and (end - start) * HOP_S < BRIDGE_S:
            active[start:end] = True
    for start, end in _runs(active, True):   # drop clicks
        if (end - start) * HOP_S < MIN_BURST_S:
            active[start:end] = False
    return active


def timing(wav: np.ndarray, sr: int, text: str | None = None, detector: str = "auto") -> dict[str, Metric]:
    """Silence before and after the speech, the longest pause, an ending in mid-speech, and the
    speaking rate of TEXT over the speech (when given); DETECTOR finds the speech (`detect_speech`)."""
    active, vad = detect_speech(wav, sr, detector)
    duration = len(wav) / sr
    if not active.any():
        none = Metric(None, "s", vad)
        return {"speech_s": Metric(0.0, "s", vad, "no speech found"), "leading_silence_s": none,
                "trailing_silence_s": none, "longest_pause_s": none, "ends_in_speech": Metric(None, "", vad)}
    first, last = np.flatnonzero(active)[[0, -1]]
    start_s, end_s = first * HOP_S, min(duration, last * HOP_S + FRAME_S)
    inner = active[first:last + 1]
    pause = max(((e - s) * HOP_S for s, e in _runs(inner, False)), default=0.0)
    trailing = duration - end_s
    out = {
        "speech_s": Metric(round(end_s - start_s, 3), "s", vad),
        "leading_silence_s": Metric(round(start_s, 3), "s", vad),
        "trailing_silence_s": Metric(round(trailing, 3), "s", vad),
        "longest_pause_s": Metric(round(pause, 3), "s", vad,
                                  f"a pause of {pause:.1f} s inside the speech" if pause >= PAUSE_FLAG_S else ""),
        "ends_in_speech": Metric(bool(trailing < CUT_OFF_S), "", vad,
                                 "speech runs up to the last sample: cut off?" if trailing < CUT_OFF_S else ""),
    }
    if text is not None:
        letters = len(re.findall(r"\w", text))
        rate = letters / max(end_s - start_s, 1e-3)
        flag = ""
        if rate < RATE_LOW:
            flag = f"{rate:.1f} letters per second of speech: more audio than text (a tail, babble?)"
        elif rate > RATE_HIGH:
            flag = f"{rate:.1f} letters per second of speech: less audio than text (words cut?)"
        out["letters_per_speech_s"] = Metric(round(rate, 2), "letters/s", vad, flag)
    return out


def clipping(wav: np.ndarray) -> Metric:
    share = float(np.mean(np.abs(wav) >= CLIP_LEVEL)) if len(wav) else 0.0
    return Metric(share, "share of samples", f"|x| >= {CLIP_LEVEL} (ttsopt.measure.quality)",
                  f"{share:.2%} of samples clipped" if share > CLIP_SHARE_FLAG else "")


def constant_tone(wav: np.ndarray, sr: int) -> tuple[Metric, Metric]:
    """The frequency that stands out of its neighbourhood in the most frames, and that share."""
    frames = _frames(np.asarray(wav, np.float64), sr, TONE_FRAME_S, TONE_FRAME_S / 2)
    power = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1)) ** 2 + 1e-20
    db = 10 * np.log10(power)
    bin_hz = sr / frames.shape[1]
    width = max(2, int(TONE_NEIGHBOURS_HZ / bin_hz))
    kernel = np.ones(2 * width + 1) / (2 * width + 1)
    around = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), 1, db)
    standing = (db - around) > TONE_OVER_NEIGHBOURS_DB
    standing[:, :3] = False  # DC and the lowest bins are not a tone
    share = standing.mean(axis=0)
    peak = int(np.argmax(share))
    source = f"narrowband peak over ±{TONE_NEIGHBOURS_HZ:.0f} Hz in {TONE_FRAME_S * 1e3:.0f} ms frames"
    flag = (f"a constant tone near {peak * bin_hz:.0f} Hz in {share[peak]:.0%} of frames"
            if share[peak] >= TONE_SHARE_FLAG else "")
    return (Metric(round(float(share[peak]), 3), "share of frames", source, flag),
            Metric(round(peak * bin_hz, 1), "Hz", source))


def log_mel_distance(wav: np.ndarray, baseline: np.ndarray, sr: int) -> Metric:
    """Mean absolute difference of the log-mel spectrograms in dB, over the shorter clip."""
    import librosa

    n = min(len(wav), len(baseline))
    if n < MEL["n_fft"]:
        return Metric(None, "dB", "log-mel (librosa)", "too short to compare")
    mels = [10 * np.log10(librosa.feature.melspectrogram(y=np.asarray(x[:n], np.float32), sr=sr, **MEL) + 1e-10)
            for x in (wav, baseline)]
    value = float(np.mean(np.abs(mels[0] - mels[1])))
    return Metric(round(value, 3), "dB", f"log-mel, {MEL['n_mels']} bands (librosa {librosa.__version__})")


RECOGNISER_SR = 16_000
WER_MISSING = "not computed: the recogniser is not installed (pip install 'ttsopt[quality]': pocketsphinx, jiwer)"


ASR_ENV = "TTSOPT_ASR_MODEL"  # a local transformers speech-recognition model folder: replaces pocketsphinx


def _local_recogniser() -> Path | None:
    """The folder `TTSOPT_ASR_MODEL` names, checked; None when it is not set."""
    value = os.environ.get(ASR_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    if not (folder / "config.json").is_file():
        raise UserError(f"{ASR_ENV}={value}: no transformers model there (no config.json); point it at a "
                        "downloaded speech-recognition model folder (a Whisper checkpoint, say), or unset it")
    return folder


def recogniser_source() -> str | None:
    """What computes the word error rate here, or None when its packages are missing."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        jiwer = f"jiwer {version('jiwer')} (wer_standardize)"
        local = _local_recogniser()
        if local is not None:
            kind = json.loads((local / "config.json").read_text()).get("model_type", "unknown")
            return f"{kind} model at {local} ({ASR_ENV}), transformers {version('transformers')}, {jiwer}"
        return f"pocketsphinx {version('pocketsphinx')} (en-us model in its wheel), {jiwer}"
    except PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=2)
def _asr_pipeline(folder: str):
    from transformers import pipeline
    return pipeline("automatic-speech-recognition", model=folder, device="cpu")


def _transcribe(audio: np.ndarray) -> str:
    """What the recogniser hears in AUDIO (16 kHz float)."""
    local = _local_recogniser()
    if local is not None:
        asr = _asr_pipeline(str(local))
        extra = {"generate_kwargs": {"language": "en", "task": "transcribe"}} \
            if asr.model.config.model_type == "whisper" else {}
        return str(asr({"raw": audio, "sampling_rate": RECOGNISER_SR}, **extra)["text"])
    from pocketsphinx import Decoder
    decoder = Decoder(samprate=RECOGNISER_SR, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
    decoder.end_utt()
    return decoder.hyp().hypstr if decoder.hyp() is not None else ""


def word_error_rate(wav: np.ndarray, sr: int, text: str) -> Metric:
    """Errors per word of TEXT in what the offline recogniser hears in WAV (0 is perfect; above
    1 when it hears extra words). The transcript is in the metric's note."""
    source = recogniser_source()
    if source is None:
        return Metric(None, "word error rate", WER_MISSING)
    import jiwer
    import librosa

    audio = librosa.resample(np.asarray(wav, np.float32), orig_sr=sr, target_sr=RECOGNISER_SR) \
        if sr != RECOGNISER_SR else np.asarray(wav, np.float32)
    heard = _transcribe(audio)
    value = jiwer.wer(text, heard, reference_transform=jiwer.wer_standardize,
                      hypothesis_transform=jiwer.wer_standardize) if heard.strip() else 1.0
    return Metric(round(float(value), 3), "word error rate", source, note=heard)


VOICE_MISSING = "not computed: the speaker encoder is not installed (pip install 'ttsopt[quality]': resemblyzer)"
_ENCODER = []  # Resemblyzer's encoder, loaded once per process (about 2 s)


def voice_similarity(wav: np.ndarray, sr: int, reference: np.ndarray, reference_sr: int) -> Metric:
    """Cosine similarity of the speaker embeddings of WAV and REFERENCE (1: the same voice)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        source = f"resemblyzer {version('resemblyzer')} (GE2E speaker encoder in its wheel), cosine"
    except PackageNotFoundError:
        return Metric(None, "cosine", VOICE_MISSING)
    from resemblyzer import VoiceEncoder, preprocess_wav
    if not _ENCODER:
        _ENCODER.append(VoiceEncoder(device="cpu", verbose=False))
    embed = [_ENCODER[0].embed_utterance(preprocess_wav(np.asarray(x, np.float32), source_sr=rate))
             for x, rate in ((wav, sr), (reference, reference_sr))]
    return Metric(round(float(np.dot(embed[0], embed[1])), 3), "cosine", source)


VE_SR = 16_000  # Chatterbox's VoiceEncoder works at 16 kHz (its VoiceEncConfig.sample_rate)


def chatterbox_similarity(encoder, wav: np.ndarray, sr: int, reference, reference_sr: int | None = None) -> Metric:
    """Cosine similarity of WAV to REFERENCE in Chatterbox's own speaker space: the embeddings of
    ENCODER, a loaded model's upstream `VoiceEncoder` (`model.tts.ve`; passed in, never built
    here). REFERENCE is a clip at REFERENCE_SR, or, with REFERENCE_SR None, a speaker embedding
    from the same encoder: a model's conditionals keep the one of the clip they were made from
    (`conds.t3.speaker_emb`), which is how T3 hears the voice.

    It means something only with real weights: random ones embed every clip somewhere arbitrary
    (and a clip is still closest to itself, which is all the tests can show)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        package = f"chatterbox-tts {version('chatterbox-tts')}"
    except PackageNotFoundError:
        package = "chatterbox-tts"
    import librosa

    def at_rate(x, rate):
        x = np.asarray(x, np.float32).reshape(-1)
        return librosa.resample(x, orig_sr=rate, target_sr=VE_SR) if rate != VE_SR else x

    clips = [at_rate(wav, sr)] + ([at_rate(reference, reference_sr)] if reference_sr is not None else [])
    embeds = np.asarray(encoder.embeds_from_wavs(clips, sample_rate=VE_SR), np.float64)
    if reference_sr is None:
        other = reference.detach().float().cpu().numpy() if hasattr(reference, "detach") else reference
        embeds = np.stack([embeds[0], np.asarray(other, np.float64).reshape(-1)])
        against = "against the conditionals' speaker embedding"
    else:
        against = "against the reference clip"
    embeds /= np.linalg.norm(embeds, axis=1, keepdims=True)
    return Metric(round(float(embeds[0] @ embeds[1]), 3), "cosine",
                  f"chatterbox VoiceEncoder ({package}, the loaded model's weights), cosine {against}, 16 kHz")


MOS_MISSING = "not computed: the MOS predictor is not installed (pip install 'ttsopt[quality]': distillmos)"
_MOS = []  # DistillMOS, loaded once per process


def naturalness(wav: np.ndarray, sr: int) -> Metric:
    """DistillMOS's predicted mean opinion score of WAV, 1 (bad) to 5 (excellent), no reference."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        source = f"distillmos {version('distillmos')} (DistillMOS v7, weights in its wheel), 16 kHz"
    except PackageNotFoundError:
        return Metric(None, "MOS", MOS_MISSING)
    import librosa
    import torch
    from distillmos import ConvTransformerSQAModel

    if not _MOS:
        with redirect_stdout(io.StringIO()):  # it prints where it loaded its weights from
            _MOS.append(ConvTransformerSQAModel().eval())
    audio = librosa.resample(np.asarray(wav, np.float32), orig_sr=sr, target_sr=RECOGNISER_SR) \
        if sr != RECOGNISER_SR else np.asarray(wav, np.float32)
    with torch.inference_mode():
        value = float(_MOS[0](torch.from_numpy(np.ascontiguousarray(audio))[None]).reshape(-1)[0])
    return Metric(round(value, 3), "MOS (1-5)", source)


def score(wav: np.ndarray, sr: int, text: str | None = None, baseline: np.ndarray | None = None,
          models: bool = True, reference: tuple[np.ndarray, int] | None = None) -> dict[str, Metric]:
    """Every check of this module on WAV (mono float). With MODELS, the predicted MOS and, with
    TEXT, the word error rate; with BASELINE, the distances to it; with REFERENCE (clip, rate) and
    MODELS, the voice's similarity to it. Without MODELS only the model-free checks run: the
    energy detector finds the speech, not silero-vad."""
    wav = np.asarray(wav, np.float64).reshape(-1)
    metrics = {"duration_s": Metric(round(len(wav) / sr, 3), "s", "samples / rate"),
               **timing(wav, sr, text, "auto" if models else "energy"),
               "clipped": clipping(wav)}
    if models:
        metrics["mos"] = naturalness(wav, sr)
    if text is not None and models:
        metrics["word_error_rate"] = word_error_rate(wav, sr, text)
    if reference is not None and models:
        metrics["voice_similarity"] = voice_similarity(wav, sr, *reference)
    metrics["tone_share"], metrics["tone_hz"] = constant_tone(wav, sr)
    if baseline is not None:
        baseline = np.asarray(baseline, np.float64).reshape(-1)
        metrics["log_mel_distance_db"] = log_mel_distance(wav, baseline, sr)
        metrics["length_ratio"] = Metric(round(len(wav) / max(len(baseline), 1), 4), "ratio", "samples / baseline's")
        metrics.update(intrusive(wav, baseline, sr))
    return metrics


ALIGNED = 0.01  # intrusive measures compare sample by sample: lengths may differ by this share at most


def intrusive(wav: np.ndarray, baseline: np.ndarray, sr: int) -> dict[str, Metric]:
    """Wideband PESQ (MOS-LQO, 1 to 4.64) and STOI (0 to 1) of WAV against BASELINE, at 16 kHz over
    the common length; only for clips of (nearly) the same length, which they assume aligned."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        sources = {"pesq_wb": f"pesq {version('pesq')} (ITU-T P.862.2, wideband), 16 kHz",
                   "stoi": f"pystoi {version('pystoi')}, 16 kHz"}
    except PackageNotFoundError:
        why = "not computed: pip install 'ttsopt[quality]' (pesq, pystoi)"
        return {"pesq_wb": Metric(None, "MOS-LQO", why), "stoi": Metric(None, "0-1", why)}
    if abs(len(wav) / max(len(baseline), 1) - 1) > ALIGNED:
        why = "not computed: the clips differ in length, and these measures compare aligned samples"
        return {"pesq_wb": Metric(None, "MOS-LQO", why), "stoi": Metric(None, "0-1", why)}
    import librosa
    from pesq import pesq
    from pystoi import stoi

    n = min(len(wav), len(baseline))
    ref, deg = (librosa.resample(np.asarray(x[:n], np.float64), orig_sr=sr, target_sr=RECOGNISER_SR)
                for x in (baseline, wav))
    with warnings.catch_warnings(record=True) as warned:  # too short: pystoi warns and returns 1e-5
        warnings.simplefilter("always")
        intelligibility = round(float(stoi(ref, deg, RECOGNISER_SR)), 3)
    short = [w for w in warned if "Not enough STFT frames" in str(w.message)]
    stoi_metric = Metric(None, "0-1", f"{sources['stoi']}: too short (under 30 frames of speech)") if short else \
        Metric(intelligibility, "0-1", sources["stoi"])
    try:
        p = round(float(pesq(RECOGNISER_SR, ref, deg, "wb")), 3)
    except Exception as exc:  # the library refuses silence and clips shorter than a quarter second
        return {"pesq_wb": Metric(None, "MOS-LQO", f"{sources['pesq_wb']}: {type(exc).__name__}"), "stoi": stoi_metric}
    return {"pesq_wb": Metric(p, "MOS-LQO", sources["pesq_wb"]), "stoi": stoi_metric}


def problems(metrics: dict[str, Metric]) -> list[str]:
    return [m.flag for m in metrics.values() if m.flag]


def as_record(metrics: dict[str, Metric]) -> dict:
    """METRICS as a record's quality fields (`q_<name>`): the plain values, the problems flagged
    and what computed the word error rate."""
    out = {k: m.value for k, m in metrics.items() if isinstance(m.value, (bool, int, float))}
    out["problems"] = "; ".join(problems(metrics))
    if "word_error_rate" in metrics:
        out["recogniser"] = metrics["word_error_rate"].source
    return out
