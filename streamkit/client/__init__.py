"""Settings to librdkafka configuration, the start-up connection check, and the
diagnosis of librdkafka errors."""
