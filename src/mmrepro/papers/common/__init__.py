"""Helpers shared by a family of paper modules (speech recognisers, captioners), declared as a
dependency of every paper's DVC stages."""
