"""The MCP server wing (main.py): the product API client, tools, resources, prompt, event
store and HTTP app. Importing it registers every tool, resource and prompt on `mcp`."""

from product_mcp.mcp_server import resources, tools
from product_mcp.mcp_server.api_client import api
from product_mcp.mcp_server.server import mcp

__all__ = ["api", "mcp", "resources", "tools"]
