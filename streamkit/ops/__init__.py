"""Operations: admin (topics, lag), ACLs, readiness checks, dead-letter inspect and replay."""
