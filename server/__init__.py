"""The raremem memory server: store (numpy + FAISS), service (named memories, batching,
persistence) and servicer (gRPC). The store imports neither gRPC nor torch."""
