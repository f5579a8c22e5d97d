"""PostgreSQL's search table (`product_search`, migration 0004_search_table) follows every
write to products in the writer's own transaction: each product has exactly one row, with its
archived flag, its price, the tsvector products' old generated column held (names A,
descriptions B) and its length in words, and every word of it is in `search_words` with its
largest share of ts_rank (0005), whichever way the product was written (bulk insert, staff
create, edit, archive, import by SKU, delete, TRUNCATE ... CASCADE), and search answers from
it at once.

`product_search_query(terms)`, what the GIN index is asked, matches exactly what the terms as
prefixes match: a term covering at most 16 known words as those words, any other as a prefix.

Matches and ranking on both databases: test_search_dialects.py; the migration from the
column: test_migrations.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bench.catalog import fill
from models import ProductCreate, ProductUpdate
from product_mcp.shop import Shop, make_engine
from product_mcp.shop.importer import ImportRow
from tests.databases import fresh_database

# Words of the vectors missing from search_words (product_search_query would miss them).
UNKNOWN_WORDS = """
SELECT count(*) FROM (SELECT DISTINCT unnest(tsvector_to_array(search_vector)) AS w
                      FROM product_search) AS used
WHERE NOT EXISTS (SELECT FROM search_words WHERE word = w COLLATE "C")
"""
# Rows of product_search that differ from what products say they should be (either side).
OUT_OF_STEP = """
SELECT count(*) FROM products p FULL JOIN product_search s ON s.product_id = p.id
WHERE p.id IS NULL OR s.product_id IS NULL OR s.archived <> p.archived
   OR s.price_cents <> p.price_cents
   OR s.search_vector <> setweight(to_tsvector('shop_search', p.name), 'A')
                         || setweight(to_tsvector('shop_search', p.description), 'B')
   OR s.word_count <> (SELECT COALESCE(sum(GREATEST(cardinality(u.positions), 1)), 0)
                       FROM unnest(s.search_vector) AS u)
"""
# Words of a vector whose share of ts_rank there is above the largest search_words holds for
# them (the bound migration 0005 ranks by would not hold).
UNDER_SHARED = """
SELECT count(*) FROM product_search AS s, unnest(s.search_vector) AS u
WHERE ts_rank('{0, 0, 0.1, 1.0}'::float4[], s.search_vector,
              CAST('''' || replace(replace(u.lexeme, '\\', '\\\\'), '''', '''''') || ''''
                   AS tsquery))
      > (SELECT max(share) FROM search_words AS k WHERE k.word = u.lexeme)
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp: Path = tmp_path_factory.mktemp("search-table")
    with fresh_database("postgresql", tmp, "search_table") as url:
        engine = make_engine(url)
        try:
            Shop(engine).init()
            yield Shop(engine)
        finally:
            engine.dispose()


def _in_step(shop: Shop) -> int:
    """How many products there are, after checking product_search mirrors them all."""
    with shop.engine.connect() as conn:
        assert conn.scalar(text(OUT_OF_STEP)) == 0
        assert conn.scalar(text(UNKNOWN_WORDS)) == 0
        assert conn.scalar(text(UNDER_SHARED)) == 0
        return int(conn.scalar(text("SELECT count(*) FROM product_search")) or 0)


def _found(shop: Shop, q: str, **kw: float) -> list[int]:
    return [p.id for p in shop.list_products(q=q, limit=20, **kw)]


def test_every_write_keeps_the_search_table_in_step(shop: Shop) -> None:
    assert _in_step(shop) == 4  # the seed
    shop.add_products([("Trail Earbuds", 1_000, "sweat-proof", 3), ("Desk Lamp", 2_500, "", 0)])
    assert _in_step(shop) == 6
    assert _found(shop, "trail") == [5]
    made = shop.create_product(ProductCreate(name="Reading Lamp", price=12.5, sku="LAMP-1"))
    assert _in_step(shop) == 7
    assert _found(shop, "lamp") == [6, made.id]  # the same rank: by id

    shop.update_product(5, ProductUpdate(name="Canyon Buds", description="wireless"))
    assert _in_step(shop) == 7
    assert _found(shop, "trail") == []
    assert 5 in _found(shop, "canyon wireless")
    shop.update_product(5, ProductUpdate(price=40.0))
    assert _in_step(shop) == 7
    assert 5 not in _found(shop, "canyon", max_price=30.0)
    assert _found(shop, "canyon", min_price=30.0) == [5]

    shop.archive_product(6)
    assert _in_step(shop) == 7
    assert 6 not in _found(shop, "lamp")

    rows = [
        ImportRow(sku="LAMP-1", name="Reading Lamp Pro", price=15.0),  # an update by SKU
        ImportRow(sku="KETTLE-1", name="Travel Kettle", price=20.0, stock=2),  # new
    ]
    report = shop.import_products(rows)
    assert (report.created, report.updated) == (1, 1)
    assert _in_step(shop) == 8
    assert _found(shop, "kettle") == [report.products[1].id]
    assert _found(shop, "reading", min_price=14.0) == [made.id]

    with shop.engine.begin() as conn:  # products are archived, not deleted; if one is:
        conn.execute(text("DELETE FROM inventory WHERE product_id = 5"))
        conn.execute(text("DELETE FROM products WHERE id = 5"))
    assert _in_step(shop) == 7
    with shop.engine.begin() as conn:  # how the test databases are emptied
        conn.execute(text("TRUNCATE products, inventory, product_changes CASCADE"))
    assert _in_step(shop) == 0
    shop.init()  # seeds the empty catalogue again, with the same ids
    assert _in_step(shop) == 4
    assert _found(shop, "earbuds") == [2]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """2,000 generated products (bench/catalog.py), and one with 20 words starting "zq", on a
    database of their own."""
    tmp: Path = tmp_path_factory.mktemp("search-words")
    with fresh_database("postgresql", tmp, "search_words") as url:
        engine = make_engine(url)
        try:
            fill(Shop(engine), 2_000)
            soup = " ".join(f"zq{letter}" for letter in "abcdefghijklmnopqrst")
            Shop(engine).add_products([("Word Soup", 100, soup, 1)])
            yield Shop(engine)
        finally:
            engine.dispose()


def _matching(shop: Shop, asked: str, terms: list[str]) -> set[int]:
    sql = f"SELECT product_id FROM product_search WHERE search_vector @@ ({asked})"
    prefixes = " | ".join(f"'{t}':*" for t in terms)
    with shop.engine.connect() as conn:
        return set(conn.scalars(text(sql), {"terms": terms, "prefixes": prefixes}))


@pytest.mark.parametrize(
    "terms",
    [
        ["wireless", "earbuds"],  # one word each: exact
        ["charging", "smart"],  # two words each (charg, charger; smart, smartphon)
        ["zq", "pro"],  # 'zq' covers more than 16 words: left a prefix
        ["zqa", "zqt"],
        ["4k", "16gb", "zzz"],  # numbers and words; a prefix nothing has
        ["eco_friendly", "gift"],  # '_' splits: a phrase of two prefixes, left as it is
        ["the", "o", "x"],
    ],
)
def test_the_index_is_asked_for_exactly_what_the_prefixes_match(
    generated: Shop, terms: list[str]
) -> None:
    asked = "SELECT product_search_query(CAST(:terms AS text[]))"
    expected = _matching(generated, "SELECT to_tsquery('shop_search', :prefixes)", terms)
    assert expected
    assert _matching(generated, asked, terms) == expected
    with generated.engine.connect() as conn:
        query = str(conn.scalar(text(asked), {"terms": terms}))
    if terms[0] in ("wireless", "charging"):
        assert ":*" not in query, query  # words, read straight from their lists
    if terms[0] == "zq":
        assert "'zq':*" in query, query
