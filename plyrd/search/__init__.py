"""Unified search: an FTS5 index in its own file (search.db, apsw only), fed from plyrd.db's change log.

- `text`: folding (case, accents, quotes, punctuation) shared by the index and the queries;
- `index`: search.db and its tiered queries (exact > prefix > words > substring > fuzzy) and "more like this";
- `docs`: what is indexed of each catalog row, and only what discovery may show;
- `indexer`: the worker applying the change log in order, and the rebuild (`plyrd reindex`);
- `service`: the node's Search (GET /search/, GET /tracks/{id}/similar), results read fresh from plyrd.db.
"""

from .index import KINDS, Hit, SearchIndex
from .service import Search

__all__ = ["KINDS", "Hit", "Search", "SearchIndex"]
