"""Alembic migrations of the shop's schema, run by `product_mcp.shop.migrate` (no alembic.ini).

`env.py` migrates the connection it is handed (api.py's, inside its lock), or the database of
`DATABASE_URL` when run from the command line; `versions/` holds one file per revision.
"""
