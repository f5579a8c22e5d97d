"""The web chat wing (web.py): mcp.json, sessions to every MCP server, the tool-calling loop
with approvals, and the validated history the page sends back."""
