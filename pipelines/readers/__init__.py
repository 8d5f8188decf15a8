"""Readers of every input into canonical Arrow tables: one file layer (files.py: discovery on
local disk, S3 or the Hub, Parquet / JSON lines / SQuAD JSON, one bad-input policy) and one
module per source family."""
