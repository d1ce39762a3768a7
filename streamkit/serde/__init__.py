"""Event envelope, wire format, Avro and JSON Schema (compiled checks), registry face."""
