"""web.py, the web chat.

web.py's own routes (security defaults, body limits, no-LLM mode, CORS) run its app in
process with a stub MCP manager (tests/inproc.py `web_app`); the chat loop, streaming and
approvals, and several servers at once run against real processes (tests/stack.py) with the
scripted LLM (tests/fake_llm.py). Pure helpers (mcp.json parsing, naming, history) are units.
"""
