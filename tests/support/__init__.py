"""What the tests share: real processes and servers to drive, payloads, fixtures' data."""
