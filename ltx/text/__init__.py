"""The text path: Gemma 3, the feature extractor and connectors, prompt enhancement."""
