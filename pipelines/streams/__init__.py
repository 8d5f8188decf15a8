"""What training workers read: committed shards (shard_stream) or documents embedded while
training (runtime_stream)."""
