"""The Ray Train side of training: the pre-training / instruction-tuning job (config,
preflight, the TorchTrainer launch, the per-worker loop) and the normalizer fit. The training
core itself (batches, engine, step, checkpoint format) is mimir_model's and never imports Ray."""
