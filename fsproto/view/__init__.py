"""Drawing and browsing above the formats: block maps (terminal, PNG) and the explorer app."""
