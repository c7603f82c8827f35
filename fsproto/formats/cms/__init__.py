"""IBM CMS EDF minidisk format (placeholder until the format lands)."""
