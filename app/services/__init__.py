"""Business rules: plain functions over the session. They own the transaction."""
