"""Where a many-list IVF loses the exact top-1 on the scale bench's clustered keys: the fit or
the quantizer's search. For N keys (bench/scale.py's clustered keys, one list per 64) it prints,
for 256 fresh queries, how often the list holding the exact top-1 (assigned exactly, over all
centroids) is among the query's nprobe exactly nearest centroids, and how many lists one data
cluster's points fall into. The FAISS two-level fit first; with --rounds R, R more rounds of
global Lloyd k-means from it, points assigned through an HNSW graph of the centroids.

    python -m bench.ivf_fit [--n 1048576] [--rounds 3]
"""

from __future__ import annotations

import torch  # noqa: F401,I001 - torch before faiss (design.md §5)

import argparse
import time

import faiss
import numpy as np

from bench.scale import HNSW_M, D, clustered, neighbours, queries_near, store_of
from raremem.server.indexes import two_level_centroids


def report(name: str, cent: np.ndarray, x: np.ndarray, labels: np.ndarray, q: np.ndarray, top1: np.ndarray) -> None:
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(cent)
    own = flat.search(x[top1], 1)[1][:, 0]   # (256,) the list each exact top-1 lives in
    probe = flat.search(q, 64)[1]            # (256, 64) each query's nearest lists
    hit = {p: float(np.mean([own[i] in probe[i, :p] for i in range(len(q))])) for p in (4, 16, 64)}
    spread = [len(np.unique(flat.search(x[labels == c], 1)[1])) for c in range(200) if (labels == c).any()]
    print(f"{name}: exact top-1's list among the nprobe nearest {hit}; lists per data cluster, "
          f"median {np.median(spread):.0f}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1 << 20)
    p.add_argument("--rounds", type=int, default=0)
    a = p.parse_args()
    faiss.omp_set_num_threads(1)
    n, nlist = a.n, a.n // 64
    rng = np.random.default_rng(0)
    x, centres, labels = clustered(rng, n, D)
    q = queries_near(rng, centres, 256)
    top1 = neighbours(store_of(x), q, 1)[:, 0]   # (256,) the exact top-1 of each query
    sample = x[np.sort(rng.choice(n, 39 * nlist, replace=False))]
    t = time.perf_counter()
    cent = two_level_centroids(sample, nlist, 0)
    print(f"N {n:,}, {nlist:,} lists: two-level fit {time.perf_counter() - t:.0f} s", flush=True)
    report("two-level", cent, x, labels, q, top1)
    if a.rounds:
        cp = faiss.ClusteringParameters()
        cp.niter, cp.spherical, cp.max_points_per_centroid = a.rounds, True, 1 << 30
        kmeans = faiss.Clustering(D, nlist, cp)
        faiss.copy_array_to_vector(cent.ravel(), kmeans.centroids)
        graph = faiss.IndexHNSWFlat(D, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efSearch = 64
        t = time.perf_counter()
        kmeans.train(sample, graph)
        print(f"{a.rounds} global rounds {time.perf_counter() - t:.0f} s", flush=True)
        report(f"two-level + {a.rounds} rounds", faiss.vector_to_array(kmeans.centroids).reshape(nlist, D),
               x, labels, q, top1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
