"""Penny's document index: ingestion, chunking, embedding, Chroma storage and retrieval."""
