"""S3Gen's HiFT vocoder with its 1-D convolutions run as 2-D ones of height 1 in channels-last
memory, on the same weights.

Why: HiFT is mostly 1-D convolutions over long sequences (up to 64 channels by 30 000 samples
for a few seconds of speech) and the Snake activations between them. A 1-D convolution has no
channels-last format of its own, so torch hands oneDNN channels-first input and weights; the same
product as a 2-D convolution of height 1 in channels-last memory takes oneDNN's faster path on a
CPU, most of all at 64 and 128 channels (the README gives the measured gain and the command). The
activations stay four-dimensional and channels-last from the first convolution to the last, so
nothing is reordered between them. The sums run in another order: the waveform matches upstream's
within float32 rounding (tests), not bit for bit.

Weight normalisation, which upstream recomputes from its two parameters at every call, is folded
into each weight once, with the same arithmetic. Snake runs in place: the same operations in the
same order as upstream's, so the same bits, in one buffer rather than five.

The HiFT's modules are replaced on the instance given, never its classes (a deep copy shares the
classes that weight normalisation creates), and its `decode` is replaced on that instance only;
the f0 predictor and the sine source stay upstream's.

`use_dtype` then puts the converted modules in another precision (bfloat16, `bf16-vocoder`): the
convolutions and Snake activations run in it, while the source's STFT, the f0 predictor, the sine
source and the iSTFT stay float32 (torch has no bfloat16 complex kernels). That is not lossless:
the waveform moves by bfloat16 rounding of every activation, which the fidelity probe measures
(the vocoder's waveform on the baseline's mel).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from chatterbox.models.s3gen.hifigan import Snake
from torch import nn

CONVERTED = ("conv_pre", "ups", "source_downs", "source_resblocks", "resblocks", "conv_post")


class RowConv(nn.Module):
    """A Conv1d or ConvTranspose1d as a channels-last 2-D convolution of height 1."""

    def __init__(self, conv: nn.Conv1d | nn.ConvTranspose1d):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"{type(conv).__name__} with padding {conv.padding!r} ({conv.padding_mode}) "
                             "has no height-1 form here")
        with torch.no_grad():  # reads a weight-normalised weight once, as upstream computes it per call
            weight = conv.weight.detach().clone()
        self.weight = nn.Parameter(weight.unsqueeze(2).contiguous(memory_format=torch.channels_last),
                                   requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.transposed = isinstance(conv, nn.ConvTranspose1d)
        self.stride, self.padding = (1, conv.stride[0]), (0, conv.padding[0])
        self.dilation, self.groups = (1, conv.dilation[0]), conv.groups
        self.output_padding = (0, conv.output_padding[0]) if self.transposed else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                      self.groups, self.dilation)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class RowSnake(nn.Module):
    """Upstream's Snake, x + 1/(alpha + eps) * sin(alpha x)^2, over (batch, channels, 1, time),
    computed in one buffer in upstream's order of operations."""

    def __init__(self, snake: Snake):
        super().__init__()
        alpha = snake.alpha.detach()
        self.alpha = nn.Parameter((torch.exp(alpha) if snake.alpha_logscale else alpha).clone(),
                                  requires_grad=False)
        self.eps = snake.no_div_by_zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, 1, 1)
        out = x * alpha
        out.sin_()
        out.mul_(out)                       # pow(s, 2) is s * s in torch
        out.mul_(1.0 / (alpha + self.eps))
        return out.add_(x)


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


class RowDecode:
    """HiFT's `decode` over the converted modules, their activations in DTYPE (the STFT and iSTFT
    around them in float32); counts its calls as evidence."""

    def __init__(self, hift: nn.Module, converted: dict[str, int]):
        self.hift, self.converted, self.calls = hift, converted, 0
        self.dtype = torch.float32

    def __call__(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = self.hift
        self.calls += 1
        real, imag = h._stft(s.squeeze(1))
        s_stft = _rows(torch.cat([real, imag], dim=1)).to(self.dtype)
        x = h.conv_pre(_rows(x).to(self.dtype))
        for i in range(h.num_upsamples):
            x = F.leaky_relu(x, h.lrelu_slope)
            x = h.ups[i](x)
            if i == h.num_upsamples - 1:  # upstream's ReflectionPad1d((1, 0)) on the time axis
                x = F.pad(x, (1, 0, 0, 0), mode="reflect").contiguous(memory_format=torch.channels_last)
            x = x + h.source_resblocks[i](h.source_downs[i](s_stft))
            xs = None
            for j in range(h.num_kernels):
                y = h.resblocks[i * h.num_kernels + j](x)
                xs = y if xs is None else xs + y
            x = xs / h.num_kernels
        x = F.leaky_relu(x)
        x = h.conv_post(x).squeeze(2).float()
        half = h.istft_params["n_fft"] // 2 + 1
        magnitude = torch.exp(x[:, :half, :])
        phase = torch.sin(x[:, half:, :])
        return torch.clamp(h._istft(magnitude, phase), -h.audio_limit, h.audio_limit)


def _converted(m: nn.Module, counts: dict[str, int]) -> nn.Module:
    """M as rows: a Conv1d, ConvTranspose1d or Snake replaced, any other module with those below
    it replaced in place; COUNTS counts each kind."""
    if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
        counts["convolutions"] += 1
        return RowConv(m)
    if isinstance(m, Snake):
        counts["snakes"] += 1
        return RowSnake(m)
    for name, child in list(m._modules.items()):
        if child is not None:
            m._modules[name] = _converted(child, counts)
    return m


def use_rows(hift: nn.Module) -> RowDecode:
    """HIFT (upstream's HiFTGenerator) decoding through channels-last 2-D convolutions, converted in
    place; a second call returns the first one's decode."""
    existing = hift.__dict__.get("decode")
    if isinstance(existing, RowDecode):
        return existing
    missing = [name for name in (*CONVERTED, "num_upsamples", "num_kernels", "istft_params", "_istft", "_stft")
               if not hasattr(hift, name)]
    if missing:
        raise TypeError(f"{type(hift).__name__} is not HiFT as chatterbox-tts 0.1.7 builds it "
                        f"(no {', '.join(missing)})")
    counts = {"convolutions": 0, "snakes": 0}
    for name in CONVERTED:
        setattr(hift, name, _converted(getattr(hift, name), counts))
    decode = RowDecode(hift, counts)
    object.__setattr__(hift, "decode", decode)  # the instance's: upstream's inference calls self.decode
    return decode


def use_dtype(hift: nn.Module, dtype: torch.dtype) -> RowDecode:
    """HIFT decoding through channels-last rows (`use_rows`) whose convolutions and Snake
    activations hold and compute in DTYPE; the modules upstream's decode keeps (f0 predictor, sine
    source) and the STFT and iSTFT stay as they are."""
    decode = use_rows(hift)
    for m in hift.modules():
        if isinstance(m, (RowConv, RowSnake)):
            for name, p in m.named_parameters(recurse=False):  # channels-last kept: a 4-D weight stays in it
                setattr(m, name, nn.Parameter(p.detach().to(dtype), requires_grad=False))
    decode.dtype = dtype
    return decode


def mel_dtype(hift: nn.Module) -> torch.dtype:
    """The dtype HIFT takes its mel in: its f0 predictor's, the first module to read the mel (the
    rows of `use_dtype` cast their own input; a vocoder cast whole, the `fp16` variant's, takes float16)."""
    return next(hift.f0_predictor.parameters()).dtype


def evidence(hift: nn.Module) -> dict:
    """What the conversion did to HIFT: converted modules, decode calls, the precision they run
    in, and the weights' layout and dtype."""
    decode = hift.__dict__.get("decode")
    if not isinstance(decode, RowDecode):
        return {"decode": "upstream's"}
    rows = [m for m in hift.modules() if isinstance(m, RowConv)]
    return {"decode": "channels-last rows", **decode.converted, "calls": decode.calls,
            "dtype": str(decode.dtype).replace("torch.", ""),
            "weights_in_dtype": sum(m.weight.dtype == decode.dtype for m in rows),
            "weights_channels_last": sum(m.weight.is_contiguous(memory_format=torch.channels_last) for m in rows)}
