"""main.py, the MCP server.

Tools, resources and prompts through the SDK's in-memory client (tests/inproc.py `in_memory`,
the API in process too); real main.py processes (tests/stack.py) for what is about a
transport or the command line: SSE, Streamable HTTP headers and resumption, Host/Origin
checks, bearer auth, stateless/JSON/SSE-only/stdio modes, the banner.
"""
