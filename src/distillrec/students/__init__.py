"""Lightweight student recommenders: MF, two-tower with side features, SASRec-style sequential."""
