"""static-kv-cache: a preallocated transformers StaticCache in place of the dynamic cache, whose
keys and values grow by concatenation every step."""
from __future__ import annotations

from ..core.claims import Claim, less
from .base import Variant, lean_runner

_MIB = 2**20


class StaticKVCache(Variant):
    name = "static-kv-cache"
    claims = (Claim("rtf", "claimed 15–25% faster (KV-cache optimization)", *less(15, 25), source="assessment #9"),)
    lossless = True

    def apply(self, pipeline):
        runner = lean_runner(pipeline, self.name)
        runner.cache = "static"
        return runner

    def evidence(self, pipeline, runner) -> dict:
        cache = runner.last_cache
        if cache is None:
            return {"cache": "static", "syntheses": 0}
        nbytes = sum(layer.keys.numel() * layer.keys.element_size() * 2 for layer in cache.layers
                     if layer.is_initialized)
        return {"cache": type(cache).__name__, "layer": type(cache.layers[0]).__name__,
                "max_cache_len": int(cache.layers[0].max_cache_len), "used_len": int(cache.get_seq_length()),
                "preallocated_mb": round(nbytes / _MIB, 3)}

    def engaged(self, evidence):
        ok = evidence.get("cache") == "StaticCache" and evidence.get("used_len", 0) > 0
        return ok, ("decoded into a preallocated StaticCache" if ok else "no synthesis used a StaticCache")


VARIANTS = [StaticKVCache()]
