"""api.py and the shop behind it.

In process (tests/inproc.py `api_app`: the app under TestClient on a temp SQLite file) for the
REST contract, validation, search and analytics; real api.py processes (tests/stack.py) only
for what a process is needed for: several workers buying at once, and restarts or kill -9.
"""
