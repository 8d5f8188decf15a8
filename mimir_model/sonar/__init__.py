"""Native PyTorch SONAR text encoder, decoder and tokenizer that load Meta's checkpoints.

Entry points: pipeline.TextEncoder / TextDecoder (`from_uris`), languages.SONAR_LANGUAGES,
assets.build_tiny_sonar for offline random-weight assets.
"""
