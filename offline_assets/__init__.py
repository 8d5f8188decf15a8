"""Models the project builds itself, offline and deterministically, in the real formats: the
tiny assets of the embedded default (tiny, sonar, sat)."""
