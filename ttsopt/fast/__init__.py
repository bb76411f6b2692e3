"""The fast path: architectural changes to Chatterbox's inference, each usable on its own.

- `t3_decode.FastT3`: static KV cache, on-device sampling, sparse EOS reads, CUDA graphs.
- `s3gen.FastFlow`: S3Gen flow with per-voice caching, optional bf16, fewer CFM steps, and
  per-length-bucket CUDA graphs of the estimator.
- `int8`: dynamic int8 linear layers for CPU.
- `batch.synthesize_batch`: N prompts in one T3 batch.
- `stream.synthesize_stream`: S3Gen rendered chunk by chunk as T3's tokens arrive.
"""
