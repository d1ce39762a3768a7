"""The consume pipeline and its faces: EventConsumer, AsyncEventConsumer, TransactionalProcessor."""
