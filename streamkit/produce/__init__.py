"""EventProducer and its delivery futures."""
