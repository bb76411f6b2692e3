"""vocos: the Vocos architecture (ConvNeXt backbone + iSTFT head, `vocos` package) in place of
S3Gen's HiFT vocoder, sized like the published 24 kHz mel model (dim 512, 8 layers).

Configured for S3Gen's mel: 80 bands at 24 kHz, 480 samples per mel frame (two frames per
speech token, so still 960 samples per token); n_fft 1920 keeps the published 4:1 ratio of
window to hop. No Vocos checkpoint was trained on this mel, so its weights are seeded
random: the audio is noise whatever T3 and S3Gen produce. What it can show honestly is
the vocoder's cost. (The claim it is tested against came from an RTF computed upside down.)
"""
from __future__ import annotations

import torch

from ..core.claims import Claim, less
from .base import Variant

N_MELS = 80
HOP = 480
N_FFT = 4 * HOP
DIM, INTERMEDIATE, LAYERS = 512, 1536, 8
SEED = 0


def build(device: torch.device) -> torch.nn.Module:
    from vocos import Vocos
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        backbone = VocosBackbone(input_channels=N_MELS, dim=DIM, intermediate_dim=INTERMEDIATE, num_layers=LAYERS)
        head = ISTFTHead(dim=DIM, n_fft=N_FFT, hop_length=HOP, padding="same")
    # Mels come from S3Gen, so no feature extractor is needed.
    return Vocos(feature_extractor=torch.nn.Identity(), backbone=backbone, head=head).to(device).eval()


class VocosVocoder(Variant):
    name = "vocos"
    claims = (Claim("rtf", "claimed 89% RTF improvement (Vocos vocoder; the campaign's own assessment found its "
                           "RTF was computed upside down)", *less(89), source="assessment #6"),)
    requires = ("package vocos",)

    def apply(self, pipeline):
        state = {"vocoder": build(pipeline.device), "calls": 0}
        fade = pipeline.model.s3gen.trim_fade

        def vocode(mels: torch.Tensor) -> torch.Tensor:
            state["calls"] += 1
            wav = state["vocoder"].decode(mels.float())
            return torch.cat([wav[:, :len(fade)] * fade, wav[:, len(fade):]], dim=1)  # upstream's fade-in

        pipeline.replace("vocode", vocode, by=self.name)
        return state

    def evidence(self, pipeline, state) -> dict:
        v = state["vocoder"]
        return {"vocoder": f"{type(v).__module__}.{type(v).__name__}",
                "parameters": sum(p.numel() for p in v.parameters()),
                "mel_bands": N_MELS, "hop": HOP, "n_fft": N_FFT, "samples_per_token": 2 * HOP, "calls": state["calls"],
                "weights": f"random (seed {SEED}): no Vocos checkpoint is trained on S3Gen's mel; audio is noise"}

    def engaged(self, evidence):
        n = evidence.get("calls", 0)
        return n > 0, f"Vocos rendered {n} utterance(s)"


VARIANTS = [VocosVocoder()]
