"""The local prompt: what the local model reads (the grounded prompt and answer styles, a follow-up's
transcript, the prompt diet) and the answer format it asks for (citations, the abstention phrase)."""
