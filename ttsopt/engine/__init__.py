"""The engine: Chatterbox built from chatterbox-tts's own classes (`sources`, `arch`), the
instrumented upstream pipeline (`pipeline`), and the faster paths variants put in its stages:
T3 runners (`t3`), S3Gen's flow stage (`s3gen`), int8 linears (`quant`), streaming (`stream`)
and batching (`batch`). Everything here runs on CPU and CUDA alike; CUDA-only pieces (graph
capture) say so."""
