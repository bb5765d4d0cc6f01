"""Language models for decoding: word n-grams trained with KenLM on training transcripts only."""
