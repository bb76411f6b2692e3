"""The flow estimator's attention as three batched products: the same output as upstream's
processor (torch's fused attention) for the masks the estimator passes, and chosen per CPU."""
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from ttsopt.engine import attention


def _attention(**kwargs) -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=64, heads=4, dim_head=16, **kwargs).eval()


def _both(attn, x, processor=None, **kwargs):
    """(upstream's processor's output, the products' output) for the same module and inputs."""
    with torch.inference_mode():
        attn.set_processor(AttnProcessor2_0())
        fused = attn(x, **kwargs)
        attn.set_processor(processor or attention.ProductAttention())
        return fused, attn(x, **kwargs)


def _bias(lengths, frames, rows=1):
    """The estimator's mask: 0 on a row's frames, -1e10 on its padding, (B, ROWS, frames)."""
    keep = torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]
    return ((1.0 - keep.float()) * -1.0e10)[:, None, :].expand(-1, rows, -1).contiguous()


@pytest.mark.parametrize("mask", ["none", "no padding", "padding", "per-query", "boolean", "boolean, all kept"])
def test_the_products_compute_what_torchs_fused_attention_computes(mask):
    attn, x = _attention(), torch.randn(2, 37, 64)
    masks = {"none": None, "no padding": _bias([37, 37], 37), "padding": _bias([37, 30], 37),
             "per-query": _bias([37, 25], 37, rows=37),
             "boolean": torch.arange(37)[None, None, :] < torch.tensor([37, 20])[:, None, None],
             "boolean, all kept": torch.ones(2, 1, 37, dtype=torch.bool)}
    fused, products = _both(attn, x, attention_mask=masks[mask])
    assert products.shape == fused.shape
    torch.testing.assert_close(products, fused, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mask", ["none", "padding", "per-query"])
def test_a_long_utterances_queries_go_in_blocks_that_bound_the_scores_and_give_the_same_output(mask, monkeypatch):
    attn, x = _attention(), torch.randn(2, 37, 64)
    masks = {"none": None, "padding": _bias([37, 30], 37), "per-query": _bias([37, 25], 37, rows=37)}
    row_bytes = 2 * attn.heads * 37 * 4  # one query's scores over 37 frames, every head of both rows, float32
    blocks, attend = [], attention._attend

    def counted(q, *rest):
        blocks.append(q.size(1))
        return attend(q, *rest)

    monkeypatch.setattr(attention, "_attend", counted)
    fused, products = _both(attn, x, attention.ProductAttention(scores_bytes=4 * row_bytes + 1),
                            attention_mask=masks[mask])
    assert blocks == [4] * 9 + [1]
    torch.testing.assert_close(products, fused, rtol=1e-5, atol=1e-5)


def test_the_products_attend_over_a_context_as_upstreams_cross_attention_does():
    attn, x, context = _attention(cross_attention_dim=32), torch.randn(2, 11, 64), torch.randn(2, 19, 32)
    fused, products = _both(attn, x, encoder_hidden_states=context, attention_mask=_bias([19, 7], 19))
    torch.testing.assert_close(products, fused, rtol=1e-5, atol=1e-5)


def test_in_bfloat16_the_products_stay_within_bfloat16_rounding_of_the_fused_kernel():
    attn, x = _attention().to(torch.bfloat16), torch.randn(2, 90, 64, dtype=torch.bfloat16)
    fused, products = _both(attn, x, attention_mask=_bias([90, 60], 90).bfloat16())
    error = ((products.float() - fused.float()).norm() / fused.float().norm()).item()
    assert 0 < error < 0.02, error  # rounded scores: not bit-identical, and not far


def test_only_modules_computed_as_upstreams_processor_computes_them_get_the_products():
    block = torch.nn.ModuleList([_attention(), _attention(residual_connection=True)])
    assert attention.use_products(block) == (1, 1)
    assert attention.processors(block) == {"ProductAttention": 1, "AttnProcessor2_0": 1}


def test_a_float32_module_attends_in_bfloat16_within_its_rounding_and_hands_back_float32():
    attn, x = _attention(), torch.randn(2, 90, 64)
    fused, products = _both(attn, x, attention.ProductAttention(dtype=torch.bfloat16),
                            attention_mask=_bias([90, 60], 90))
    assert products.dtype == torch.float32
    error = ((products - fused).norm() / fused.norm()).item()
    assert 0 < error < 0.02, error  # its products in bfloat16: not float32's output, and not far from it


@pytest.mark.parametrize("device, flags, precision, kind", [
    ("cpu", {"avx2", "avx512f", "avx512_bf16"}, "bfloat16", attention.PRODUCTS),
    ("cpu", {"avx2", "avx512_bf16", "amx_bf16", "amx_tile"}, "bfloat16", attention.FUSED),
    ("cpu", {"avx2", "avx512f", "avx512_bf16"}, "int8", attention.BF16_PRODUCTS),
    ("cpu", {"avx2", "avx512_bf16", "amx_bf16", "amx_tile"}, "int8", attention.FUSED),
    ("cpu", {"avx2"}, "int8", attention.FUSED),
    ("cuda", set(), "bfloat16", attention.FUSED)])
def test_the_flow_attention_follows_the_device_and_the_estimators_precision(device, flags, precision, kind):
    chosen, why = attention.flow_attention(device, flags, precision)
    assert chosen == kind and why


@pytest.mark.parametrize("mask, dropped", [("no padding", True), ("boolean, all kept", True), ("padding", False),
                                           ("per-query", False), ("boolean", False)])
def test_the_fused_attention_leaves_out_only_a_mask_that_adds_nothing_and_gives_upstreams_output(mask, dropped):
    attn, x = _attention(), torch.randn(2, 37, 64)
    masks = {"no padding": _bias([37, 37], 37), "padding": _bias([37, 30], 37),
             "per-query": _bias([37, 25], 37, rows=37),
             "boolean": torch.arange(37)[None, None, :] < torch.tensor([37, 20])[:, None, None],
             "boolean, all kept": torch.ones(2, 1, 37, dtype=torch.bool)}
    fused, unmasked = _both(attn, x, attention.FusedAttention(), attention_mask=masks[mask])
    assert torch.equal(unmasked, fused)  # bit for bit: a mask of zeros adds nothing to any score
    assert attention.masks(attn) == {"dropped": int(dropped), "kept": int(not dropped)}


def test_the_fused_attention_goes_to_every_attention_module():
    block = torch.nn.ModuleList([_attention(), _attention(residual_connection=True)])
    assert attention.use_fused(block, unmasked=True) == 2
    assert attention.processors(block) == {"FusedAttention": 2}
