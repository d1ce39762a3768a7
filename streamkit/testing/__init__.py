"""streamkit test kit."""
