"""Settings to librdkafka configuration, the start-up connection check, the
diagnosis of librdkafka errors, and the ``with`` block of every client that closes."""
