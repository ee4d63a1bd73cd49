"""An app whose import raises."""

raise RuntimeError("the database URL is not set")
