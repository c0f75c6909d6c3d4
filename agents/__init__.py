"""Milestone detection: pure rules over per-account state (this package) and their Faust wiring
(`milestone_stream.app`). Each module here is plain logic so it can be unit tested without Kafka."""
