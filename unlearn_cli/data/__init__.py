"""Benchmark data: item types, generators and loaders, tokenisation and batching."""
