"""Judging: LLM judge clients (``clients``) and MT-Bench's FastChat grading (``fastchat``)."""
