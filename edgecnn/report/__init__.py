"""Report writers: console tables, JSON with schema_version, Markdown, JUnit, plots."""
