"""nlb_suite: the Neural Latents Benchmark (NLB'21) from NWB files to scored, compared models."""

__version__ = "0.1.0"
