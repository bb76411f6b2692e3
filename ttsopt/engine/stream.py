"""stream: S3Gen renders T3's tokens chunk by chunk, so audio starts before T3 is done.

At each chunk boundary the flow re-renders every token so far (S3Gen's encoder attends over
the whole sequence) and the mel frames not yet emitted are vocoded and handed out. Until the
last chunk the frames that depend on look-ahead tokens not yet generated are held back (what
upstream's `finalize=False` means to do; in chatterbox-tts 0.1.7 that path fails with a mask
length mismatch, so the frames are trimmed here); the last chunk emits the rest. The chunks therefore add up to
exactly the whole utterance's length. Not lossless: every flow call draws fresh noise, and the
vocoder sees each chunk with a little left context only. No watermark (Perth marks a whole
utterance).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE

from ..measure.timing import Stopwatch
from . import vocoder
from .pipeline import SAMPLE_RATE, rtf

SAMPLES_PER_FRAME = 480
CHUNK_TOKENS = 25  # speech tokens per chunk: one second of speech
VOCODER_CONTEXT_FRAMES = 8  # left context the vocoder gets, so chunk seams are not cold starts
# Where the first audio's time goes: text and voice to T3's first token (prefill), the first chunk's
# tokens (decode), their mel frames with the reference prompt's in front (flow), and their audio.
FIRST_PARTS = ("prefill_s", "decode_s", "flow_s", "vocode_s")


@dataclass
class StreamResult:
    chunks: list[np.ndarray]
    tokens: torch.Tensor
    first_audio_s: float           # from the call to the first chunk of audio being ready
    wall_s: float
    first_parts: dict = field(default_factory=dict)  # the first audio's seconds by part (FIRST_PARTS)
    prompt_frames: int = 0         # the reference prompt's mel frames, which every chunk's flow renders again
    chunk_tokens: int = CHUNK_TOKENS
    first_chunk_tokens: int = CHUNK_TOKENS

    @property
    def wav(self) -> np.ndarray:
        return np.concatenate(self.chunks)

    @property
    def audio_s(self) -> float:
        return sum(len(c) for c in self.chunks) / SAMPLE_RATE

    @property
    def rest_rtf(self) -> float:
        """RTF of everything after the first chunk: (wall - first audio) / (audio after it)."""
        rest = self.audio_s - len(self.chunks[0]) / SAMPLE_RATE
        return rtf(self.wall_s - self.first_audio_s, rest) if rest > 0 else float("nan")


class ChunkedS3Gen:
    """S3Gen in chunks. As stage wrappers (the `stream` variant: `flow` and `vocode` receive the
    stage they wrap) it renders a finished token list chunk by chunk; `synthesize_stream` feeds
    it T3's live token stream instead."""

    def __init__(self, s3gen, chunk_tokens: int = CHUNK_TOKENS):
        self.s3gen = s3gen
        self.chunk_tokens = chunk_tokens
        self.segments: list[int] = []   # mel frames per chunk of the last utterance
        self.flow_calls = 0             # over this object's life
        self.most_chunks = 0            # the most chunks one utterance was rendered in

    def render(self, flow, speech: torch.Tensor, conds, emitted: int, final: bool) -> torch.Tensor:
        """Mel frames [emitted, ...) of SPEECH (all tokens so far) from the flow stage FLOW;
        final=False holds back the frames that wait on look-ahead tokens."""
        mels = flow(speech, conds)
        self.flow_calls += 1
        if not final:
            f = self.s3gen.flow
            mels = mels[:, :, :mels.size(2) - f.pre_lookahead_len * f.token_mel_ratio]
        return mels[:, :, emitted:]

    def vocode_chunk(self, vocode, mels: torch.Tensor, emitted: int, context: torch.Tensor | None) -> torch.Tensor:
        """Audio for new frames MELS that follow EMITTED frames; CONTEXT is the frames before."""
        if emitted == 0:
            return vocode(mels)[0]  # the vocoder stage: upstream's fade-in, start of the utterance only
        left = context[:, :, -VOCODER_CONTEXT_FRAMES:]
        both = torch.cat([left, mels], dim=2).to(dtype=vocoder.mel_dtype(self.s3gen.mel2wav))
        wav, _ = self.s3gen.hift_inference(both, None)
        return wav[0, left.size(2) * SAMPLES_PER_FRAME:]

    # --- as stage wrappers ---------------------------------------------------------------------
    def flow(self, inner, tokens: torch.Tensor, conds) -> torch.Tensor:
        bounds = list(range(self.chunk_tokens, tokens.numel(), self.chunk_tokens)) + [tokens.numel()]
        parts, emitted = [], 0
        for end in bounds:
            new = self.render(inner, tokens[:end], conds, emitted, final=end == tokens.numel())
            if new.size(2):
                parts.append(new)
                emitted += new.size(2)
        self.segments = [p.size(2) for p in parts]
        self.most_chunks = max(self.most_chunks, len(parts))
        return torch.cat(parts, dim=2)

    def vocode(self, inner, mels: torch.Tensor) -> torch.Tensor:
        wavs, emitted = [], 0
        for n in self.segments:
            wavs.append(self.vocode_chunk(inner, mels[:, :, emitted:emitted + n], emitted, mels[:, :, :emitted]))
            emitted += n
        return torch.cat(wavs).unsqueeze(0)


def synthesize_stream(pipeline, text: str, *, seed: int = 0, n_tokens: int | None = None,
                      chunk_tokens: int = CHUNK_TOKENS, first_chunk_tokens: int | None = None) -> StreamResult:
    """Stream PIPELINE's synthesis of TEXT; `pipeline.t3` must offer `blocks` (every runner here does:
    upstream's loops and fast-t3's eager one). FIRST_CHUNK_TOKENS (default CHUNK_TOKENS) sets the
    first chunk alone: fewer tokens start the audio sooner, at the cost of one more flow call."""
    first_chunk_tokens = first_chunk_tokens or chunk_tokens
    if min(chunk_tokens, first_chunk_tokens) < 1:
        raise ValueError(f"chunks hold at least one token, not {chunk_tokens} (first {first_chunk_tokens})")
    if not hasattr(pipeline.t3, "blocks"):
        raise ValueError(f"streaming reads T3's token stream, which {type(pipeline.t3).__name__} does not offer "
                         "(no `blocks`)")
    s = pipeline.sampling
    chunked = ChunkedS3Gen(pipeline.model.s3gen, chunk_tokens)
    clock = Stopwatch(pipeline.device)
    with torch.inference_mode():
        text_tokens = pipeline.text_to_tokens(text)
        conds = pipeline.conditioning()
        torch.manual_seed(seed)
        state = pipeline.t3.prefill(conds.t3, text_tokens, s)
        marks = [clock.elapsed()]  # until the first audio: prefill, decode, flow and vocoder done
        blocks, chunks, ready, mels = [], [], [], None
        pending = 0

        def emit(final: bool):
            nonlocal mels
            first = not chunks
            if first:
                marks.append(clock.elapsed())
            raw = torch.cat(blocks, dim=1)[0]
            emitted = 0 if mels is None else mels.size(2)
            # The last chunk renders what a whole synthesis renders (Turbo: its three silence tokens too).
            speech = pipeline.speech_tokens(raw) if final else raw[raw < SPEECH_VOCAB_SIZE].to(pipeline.device)
            new = chunked.render(pipeline.flow, speech, conds, emitted, final)
            if first:
                marks.append(clock.elapsed())
            if new.size(2):
                chunks.append(chunked.vocode_chunk(pipeline.vocode, new, emitted, mels).float().cpu().numpy())
                mels = new if mels is None else torch.cat([mels, new], dim=2)
                ready.append(clock.elapsed())
            elif first:  # nothing to hear yet: this flow call counts in the next chunk's decode part
                del marks[1:]

        for block in pipeline.t3.blocks(state, s, n_tokens):
            blocks.append(block)
            pending += int((block < SPEECH_VOCAB_SIZE).sum())
            if pending >= (chunk_tokens if chunks else first_chunk_tokens):
                emit(final=False)
                pending = 0
        emit(final=True)
    raw = torch.cat(blocks, dim=1)[0]
    marks.append(ready[0])
    parts = dict(zip(FIRST_PARTS, np.diff([0.0, *marks]).tolist()))
    return StreamResult(chunks, pipeline.speech_tokens(raw).cpu(), ready[0], clock.elapsed(), parts,
                        int(conds.gen["prompt_feat"].size(1)), chunk_tokens, first_chunk_tokens)
