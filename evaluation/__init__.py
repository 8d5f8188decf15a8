"""Evaluation (paper section 5), run as Ray jobs: next-sentence L2 and round-trip L2 of
pre-training (next_sentence), ROUGE-L of instruction tuning (instruct, with rouge), the SONAR
alignment pilot (alignment) and the causal-LM baseline (baseline)."""
