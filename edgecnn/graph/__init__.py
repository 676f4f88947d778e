"""Model loading, validation, summary (shape trace, MACs, bytes moved) and graph passes."""
