"""`python -m product_mcp.shop.migrations`: the command line of `product_mcp.shop.migrate`."""

from product_mcp.shop.migrate import main

main()
