"""Metrics shared by the papers: captions (pycocoevalcap), counting, WER, retrieval, reconstruction."""
