"""Every size limit of linr in one place: results per query, dimension, batch sizes.

The HTTP service and the CLI check requests against these; their settings may only tighten
them (docs/service.md, docs/cli.md).
"""

# Results per query over the HTTP API and the CLI; also the Triton kernels' top-k limit
# (linr.ops.scan_topk), so every public search can take the fused path.
MAX_K = 1000
# Results per query of `Index.search` in the library: room for oversampling above MAX_K
# (served by the torch path).
MAX_INDEX_K = 65536
# Vector dimension of an index (and of one vector in a request).
MAX_DIM = 65536
# Queries of one POST /v1/search/batch.
MAX_BATCH_QUERIES = 1024
# Vectors of one multi-embedding query; the service's default setting is lower.
MAX_QUERY_VECTORS = 4096
# Items of one POST /v1/items (bulk upsert); the service's default setting is lower.
MAX_BULK_ITEMS = 65536
