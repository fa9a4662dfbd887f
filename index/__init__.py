"""FAISS nearest neighbours over the catalogue's song vectors, keyed by string song ids.

`vector_index.VectorIndex` is one searchable space (exact below a size threshold, HNSW
above it); `spaces.CatalogueIndex` holds the spaces the service queries ("cf" and
"content") and knows which metric serves which request.
"""

from index.spaces import CatalogueIndex
from index.vector_index import IndexKind, Metric, UnknownIdError, VectorIndex

__all__ = ["CatalogueIndex", "IndexKind", "Metric", "UnknownIdError", "VectorIndex"]
