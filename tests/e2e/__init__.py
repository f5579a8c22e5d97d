"""The product as a user meets it: the one-command launcher, start-up traps (bad settings,
busy ports), the chat page in Chromium, independent clients (the MCP conformance suite and
the Inspector CLI), and the benchmark suite's smoke run.
"""
