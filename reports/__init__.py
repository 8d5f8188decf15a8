"""Report files people read: Markdown tables and PNG charts of evaluations (charts), the demo
run's report (demo) and the corpus statistics (corpus_stats)."""
