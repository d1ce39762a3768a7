"""The contenders, one module each. Every module offers ``produce`` and ``consume``
(``(env, topic, count, warmup) -> Timing``); floor and streamkit also offer the two
halves of the latency run."""
