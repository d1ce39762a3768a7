"""Operations: admin (topics, lag), ACLs, readiness checks."""
