"""Native PyTorch SONAR text encoder, decoder and tokenizer that load Meta's checkpoints.

Entry points: pipeline.TextEncoder / TextDecoder (`from_uris`; backend "native" or
"sonar-space"), languages.SONAR_LANGUAGES, assets.build_tiny_sonar for offline random-weight
assets. Parity with sonar-space is checked against tests/data/sonar_golden/.
"""
