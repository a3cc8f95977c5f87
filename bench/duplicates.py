"""Near-duplicate groups: how long gallery.analysis.duplicates.find takes, and in how much memory, on planted copies.

    .venv/bin/python bench/duplicates.py --sizes 10000            # a quick check
    .venv/bin/python bench/duplicates.py --sizes 100000           # target: <= 60 s
    .venv/bin/python bench/duplicates.py --sizes 1000000          # target: <= 15 min, bounded memory

Per size N, in one process:

1. Data: bench/search.py's clustered 512-d unit vectors (Gaussian clusters of
   about 100 items), generated in chunks straight into the one (N, 512)
   float32 array. --families x N of them (1 %) get 1 to 3 edited copies each
   (the original plus Gaussian noise of a per-copy scale drawn from --noise,
   per coordinate, re-normalised), placed at random positions among the N.
   Every item gets a random 63-bit perceptual hash and a random mirror hash;
   a copy's hashes follow its kind, drawn as the product's six probe edits
   fall (gallery.embedding.imaging.copies): "re-encoded" (3 in 6: JPEG,
   resized, greyscale) keeps its original's hashes with 1 to 3 bits flipped,
   "mirrored" (1 in 6) has them swapped (hash near the original's mirror
   hash), "cropped" (2 in 6: crop, rotation) gets new random hashes, so only
   the embedding can find it.
2. store.build of the version (real Annoy files under the scratch folder,
   IMAGESEARCH_INDEX_DIR), timed on its own: not part of the grouping target.
3. The band fit as gallery_rebuild_index makes it: bands.fit() of cosine
   distances between random pairs (calibration's sample: 400 x 2,000), the
   build's whitening (store.read_whitening), and copy probes: --probe-images
   items without planted copies get the six edits each (3 re-encoded, 1
   mirrored, 2 cropped, as the product's IMAGESEARCH_COPY_PROBES = 24 images
   give 144 probes), held out of the index. Then bands.Fitted.from_json() of
   the fit's JSON, as the grouping task reads it from the build row.
4. cache.load() of the version, then duplicates.find() timed end to end, with
   the time of its two phases (hash_pairs, embedding_pairs) read by wrapping
   them. Memory: VmHWM after resetting it just before find() (the kernel's
   peak resident set during the grouping alone: the process's own memory plus
   the resident pages of the mapped index files), and RssAnon sampled every
   20 ms (the process's own memory, what the mapped files' page cache is not).
   Figures: pairs, groups, recall (share of planted copy -> original pairs in
   one group, by kind), precision proxy (share of the pairs found that join
   two members of one planted family; random hashes and clustered vectors
   hold no other near-duplicates).
5. Baselines in the same run (the machine is shared, so speed is a ratio):
   - "forest queries": the same Annoy queries find() asks (item queries for
     NEIGHBOURS_SEARCHED + 1 at search_k = n_trees x SEARCH_K_PER_TREE, on
     its THREADS threads, CHUNK at a time) on --baseline-sample items without
     any judging, extrapolated to N: what the grouping cannot undercut with
     this forest;
   - "exact scan": an exact numpy scan for the same neighbours of
     --exact-sample items over all N (batched matrix products, 131,072 rows at a
     time), extrapolated to N: what an exact all-items neighbour search costs.
     The same sample also says how many of the pairs that Fitted.near() judges
     among each sampled item's exact neighbours find() found with the forest.

No database is used: every query is refused and the run checks that Django
never connected. The scratch folder (a temporary folder under --scratch, /tmp
by default) holds the index files and, as in the grouping task, find()'s
whitened vectors beside them (a 1 GB file at a million items); it is deleted
at the end.
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Not bench/ on the path (Python puts a script's directory first): bench/http.py
# would shadow the standard library's http package, which Django imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.calibration import setup_django  # noqa: E402  (after the path fix above)
from bench.search import DIM, Clusters, exact_top_k  # noqa: E402

GEN_CHUNK = 65_536  # rows generated at a time
HASH_TOP = 2**63 - 1  # hashes are 63-bit: [1, 2**63)
# Kinds of planted copy, with the share of the product's six probe edits each stands for.
KINDS = ("re-encoded", "mirrored", "cropped")
KIND_SHARES = (3 / 6, 1 / 6, 2 / 6)
PROBE_KINDS = (0, 0, 0, 1, 2, 2)  # the six edits of one probe image, by kind
PAIR_QUERIES, PAIR_COLUMNS = 400, 2_000  # calibration.SAMPLE_QUERIES x PAIR_SAMPLE
TARGETS = {100_000: 60.0, 1_000_000: 900.0}  # seconds of find()


# --- Data -----------------------------------------------------------------------------


@dataclass
class Planted:
    vectors: np.ndarray  # (N, 512) float32
    hashes: np.ndarray  # (N,) int64
    mirrors: np.ndarray  # (N,) int64
    family: np.ndarray  # (N,) int32: planted family, -1 for none
    copy_pos: np.ndarray  # (C,) positions of the planted copies
    orig_pos: np.ndarray  # (C,) position of each copy's original
    kind: np.ndarray  # (C,) index into KINDS
    families: int
    clusters: int
    probes: list  # bands.Probe, held out of the index


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _flip_bits(rng, values):
    """Return values with 1 to 3 of their 63 bits flipped (never 0: NO_HASH)."""
    out = values.copy()
    count = rng.integers(1, 4, len(values))
    bits = np.argsort(rng.random((len(values), 63)), axis=1)[:, :3].astype(np.int64)  # (M, 3) distinct bits
    for j in range(3):
        on = count > j
        out[on] ^= np.int64(1) << bits[on, j]
    out[out == 0] = 1
    return out


def _edited(rng, originals, noise):
    """Copies of (M, 512) unit vectors: Gaussian noise of a per-copy scale drawn from `noise`, re-normalised."""
    scale = rng.uniform(noise[0], noise[1], (len(originals), 1)).astype(np.float32)
    return _unit(originals + scale * rng.standard_normal(originals.shape, dtype=np.float32)).astype(np.float32)


def _copy_hashes(rng, kind, hashes, mirrors):
    """(hash, mirror hash) of copies of the given kinds whose originals have `hashes`, `mirrors`."""
    h = rng.integers(1, HASH_TOP, len(kind), dtype=np.int64)  # cropped: new random hashes
    m = rng.integers(1, HASH_TOP, len(kind), dtype=np.int64)
    enc, mir = kind == 0, kind == 1
    h[enc], m[enc] = _flip_bits(rng, hashes[enc]), _flip_bits(rng, mirrors[enc])
    h[mir], m[mir] = _flip_bits(rng, mirrors[mir]), _flip_bits(rng, hashes[mir])
    return h, m


def generate(n, args):
    from gallery.search import bands

    rng = np.random.default_rng(args.seed)
    n_fam = max(1, round(args.families * n))
    counts = rng.integers(1, 4, n_fam)  # copies per family
    n_copies = int(counts.sum())
    n_base = n - n_copies
    clusters = Clusters(n_base, seed=args.seed)
    perm = rng.permutation(n)
    base_pos = np.sort(perm[:n_base])  # base item b lives at position base_pos[b]
    copy_pos = perm[n_base:]
    vectors = np.empty((n, DIM), dtype=np.float32)  # the one big array
    for start in range(0, n_base, GEN_CHUNK):
        m = min(GEN_CHUNK, n_base - start)
        labels = rng.integers(0, clusters.n_clusters, m)
        noise = rng.standard_normal((m, DIM), dtype=np.float32) * np.float32(clusters.spread / np.sqrt(DIM))
        vectors[base_pos[start : start + m]] = _unit(clusters.centers[labels] + noise)
    hashes = rng.integers(1, HASH_TOP, n, dtype=np.int64)
    mirrors = rng.integers(1, HASH_TOP, n, dtype=np.int64)
    picked = rng.choice(n_base, n_fam + args.probe_images, replace=False)
    fam_orig = base_pos[picked[:n_fam]]
    probe_orig = base_pos[picked[n_fam:]]
    orig_pos = np.repeat(fam_orig, counts)
    kind = rng.choice(len(KINDS), n_copies, p=KIND_SHARES)
    for start in range(0, n_copies, GEN_CHUNK):
        at, of = copy_pos[start : start + GEN_CHUNK], orig_pos[start : start + GEN_CHUNK]
        vectors[at] = _edited(rng, vectors[of], args.noise)
    hashes[copy_pos], mirrors[copy_pos] = _copy_hashes(rng, kind, hashes[orig_pos], mirrors[orig_pos])
    family = np.full(n, -1, dtype=np.int32)
    family[fam_orig] = np.arange(n_fam)
    family[copy_pos] = np.repeat(np.arange(n_fam), counts)
    # Copy probes, as services.gallery_probe_copies makes them: six edits of each probe image, not indexed.
    p_orig = np.repeat(probe_orig, len(PROBE_KINDS))
    p_kind = np.tile(np.array(PROBE_KINDS), len(probe_orig))
    p_vec = _edited(rng, vectors[p_orig], args.noise)
    p_hash, _p_mirror = _copy_hashes(rng, p_kind, hashes[p_orig], mirrors[p_orig])
    probes = [
        bands.Probe(
            p_vec[i],
            vectors[p_orig[i]].copy(),
            int(bands.hash_distances((int(hashes[p_orig[i]]), int(mirrors[p_orig[i]])), [p_hash[i]])[0]),
        )
        for i in range(len(p_orig))
    ]
    return Planted(vectors, hashes, mirrors, family, copy_pos, orig_pos, kind, n_fam, clusters.n_clusters, probes)


def pair_distances(vectors, seed):
    """Cosine distances of random pairs, as calibration.calibrate samples them (400 items x 2,000 items)."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    rows = np.sort(rng.choice(n, min(PAIR_QUERIES, n), replace=False))
    cols = rng.choice(n, min(PAIR_COLUMNS, n), replace=False)
    dist = 1.0 - vectors[rows] @ vectors[cols].T  # (S, C)
    return np.sort(dist[rows[:, None] != cols[None, :]].astype(np.float32))


# --- Memory ---------------------------------------------------------------------------


def _status_kb(*fields):
    out = dict.fromkeys(fields, 0)
    with open("/proc/self/status") as fh:
        for line in fh:
            name = line.split(":", 1)[0]
            if name in out:
                out[name] = int(line.split()[1])
    return out


def _reset_peak():
    """Reset VmHWM to the current resident set (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class Sampler(threading.Thread):
    """Samples VmRSS and RssAnon every `every` seconds; the peaks overall and per phase."""

    def __init__(self, every=0.02):
        super().__init__(daemon=True)
        self.every = every
        self.phase = "start"
        self.peaks = {}  # phase -> (peak VmRSS kB, peak RssAnon kB)
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            s = _status_kb("VmRSS", "RssAnon")
            rss, anon = self.peaks.get(self.phase, (0, 0))
            self.peaks[self.phase] = (max(rss, s["VmRSS"]), max(anon, s["RssAnon"]))
            self.done.wait(self.every)

    def stop(self):
        self.done.set()
        self.join()

    def peak(self):
        return max(r for r, _ in self.peaks.values()), max(a for _, a in self.peaks.values())


def _mib(kb):
    return kb / 1024


# --- One size -------------------------------------------------------------------------


def _timed_phases(sampler, seconds):
    """Wrap find()'s two phases so their time is read and the sampler knows which one runs."""
    from gallery.analysis import duplicates

    originals = {"hash_pairs": duplicates.hash_pairs, "embedding_pairs": duplicates.embedding_pairs}

    def wrap(name, fn):
        def timed(*a, **kw):
            sampler.phase = name
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                seconds[name] = time.perf_counter() - t
                sampler.phase = f"after {name}"

        return timed

    for name, fn in originals.items():
        setattr(duplicates, name, wrap(name, fn))
    return lambda: [setattr(duplicates, name, fn) for name, fn in originals.items()]


def baseline_forest(loaded, n_trees, sample, threads):
    """Seconds of find()'s Annoy queries, without the judging, for `sample` positions (threads=1: a plain loop)."""
    from gallery.analysis import duplicates
    from gallery.search import ann

    n = len(loaded.ids)
    k = min(duplicates.NEIGHBOURS_SEARCHED, n - 1)
    search_k = max(1, n_trees) * duplicates.SEARCH_K_PER_TREE
    t = time.perf_counter()
    if threads == 1:
        for i in sample.tolist():
            ann.query_item(loaded.forest, i, k + 1, search_k)
        return time.perf_counter() - t
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(sample), duplicates.CHUNK):
            chunk = sample[start : start + duplicates.CHUNK]
            list(pool.map(lambda i: ann.query_item(loaded.forest, int(i), k + 1, search_k), chunk))
    return time.perf_counter() - t


def baseline_exact(loaded, fitted, sample, found_keys):
    """Seconds of an exact scan for the sample's neighbours; and the pairs Fitted.near() judges among them."""
    from gallery.analysis import duplicates
    from gallery.embedding import imaging
    from gallery.search import projection

    n = len(loaded.ids)
    k = min(duplicates.NEIGHBOURS_SEARCHED, n - 1)
    queries = np.asarray(loaded.vectors[sample])  # (E, 512)
    t = time.perf_counter()
    nearest = exact_top_k(loaded.vectors, queries, k + 1)  # (E, k + 1), the item itself among them
    seconds = time.perf_counter() - t
    # Judge each sampled item's exact neighbours as embedding_pairs judges its forest neighbours.
    judged = 0
    found = 0
    whitened = projection.is_whitened(loaded.white) and fitted.white is not None
    for row, pos, query in zip(nearest, sample.tolist(), queries, strict=True):
        others = np.array([j for j in row.tolist() if j != pos][:k], dtype=np.int64)
        vec = np.asarray(loaded.vectors[others])  # (k, 512), nearest first
        cosine = 1.0 - vec @ query
        bits = imaging.hash_distance(loaded.hashes[pos], loaded.hashes[others])
        white = None
        if whitened:
            white = 1.0 - projection.whiten(loaded.white, vec) @ projection.whiten(loaded.white, query)
        near = fitted.near(
            cosine[None], hash_distances=bits[None], white_distances=None if white is None else white[None]
        )[0]
        for j in others[near].tolist():
            judged += 1
            found += int(min(pos, j) * n + max(pos, j) in found_keys)
    return seconds, judged, found


def one_size(n, args, version):
    from django.conf import settings

    from gallery.analysis import duplicates
    from gallery.search import bands, cache, store

    print(f"\n== {n:,} items", flush=True)
    t = time.perf_counter()
    data = generate(n, args)
    gen_s = time.perf_counter() - t
    by_kind = np.bincount(data.kind, minlength=len(KINDS))
    print(
        f"  data {gen_s:.1f} s: {data.clusters:,} clusters, {data.families:,} families, {len(data.copy_pos):,} copies "
        f"({', '.join(f'{c:,} {k}' for k, c in zip(KINDS, by_kind, strict=True))}), noise per coordinate "
        f"{args.noise[0]}-{args.noise[1]}, {len(data.probes)} held-out probes",
        flush=True,
    )
    distances = pair_distances(data.vectors, args.seed)
    ids = np.arange(1, n + 1, dtype=np.int64)  # pk = position + 1
    t = time.perf_counter()
    built = store.build(1, version, ids, data.vectors, seed=args.seed, hashes=data.hashes)
    build_s = time.perf_counter() - t
    data.vectors = None  # from here on only the mapped copy of the index, as in the grouping task
    print(
        f"  store.build {build_s:.1f} s: n_trees {built.n_trees}, files {built.size_bytes / 2**20:,.0f} MiB "
        f"in {settings.IMAGESEARCH_INDEX_DIR}",
        flush=True,
    )
    fit = bands.fit(distances, store.read_whitening(1, version), data.probes)
    fitted = bands.Fitted.from_json(json.loads(json.dumps(fit)))
    print(
        f"  bands.fit: white {fit['white']}, probe_recall {fit['probe_recall']}, hash_bits {fit['hash_bits']}, "
        f"{fit['pairs']:,} pair distances, {fit['probes']} probes",
        flush=True,
    )

    loaded = cache.load(store.Ref(1, version, built.checksum, built.n_trees, built.item_count))
    before = _status_kb("VmRSS", "RssAnon")
    hwm_reset = _reset_peak()
    sampler = Sampler()
    phase_s = {}
    restore = _timed_phases(sampler, phase_s)
    sampler.start()
    step = max(duplicates.CHUNK, (n // 10) // duplicates.CHUNK * duplicates.CHUNK)
    started = time.perf_counter()

    def progress(done, total):
        if done % step < duplicates.CHUNK or done == total:
            s = _status_kb("VmRSS", "RssAnon")
            print(
                f"    embedding {done:,}/{total:,} at {time.perf_counter() - started:.0f} s, "
                f"RSS {_mib(s['VmRSS']):,.0f} MiB (anon {_mib(s['RssAnon']):,.0f})",
                flush=True,
            )

    try:
        found = duplicates.find(
            loaded,
            fitted,
            data.mirrors,
            n_trees=built.n_trees,
            scratch_dir=str(store.local_dir(1)),  # as the grouping task: the whitened file beside the index
            progress=progress,
        )
    finally:
        restore()
        sampler.stop()
    find_s = time.perf_counter() - started
    hwm = _status_kb("VmHWM")["VmHWM"] if hwm_reset else 0
    peak_rss, peak_anon = sampler.peak()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # Quality against the planted families.
    labels = np.full(n, -1, dtype=np.int64)
    for g, members in enumerate(found.groups):
        labels[members] = g
    together = (labels[data.copy_pos] >= 0) & (labels[data.copy_pos] == labels[data.orig_pos])
    pairs = found.pairs
    fam_a, fam_b = data.family[pairs.a], data.family[pairs.b]
    planted_pair = (fam_a >= 0) & (fam_a == fam_b)
    keys = np.minimum(data.copy_pos, data.orig_pos) * n + np.maximum(data.copy_pos, data.orig_pos)
    found_keys = pairs.a * n + pairs.b
    direct = np.isin(keys, found_keys)
    pure = sum(1 for g in found.groups if len(set(data.family[g].tolist())) == 1 and data.family[g[0]] >= 0)
    sizes = [len(g) for g in found.groups]

    # Baselines, same run, same opened version.
    rng = np.random.default_rng(args.seed + 1)
    sample = np.sort(rng.choice(n, min(n, args.baseline_sample), replace=False))
    forest_s = baseline_forest(loaded, built.n_trees, sample, duplicates.THREADS) * n / len(sample)
    loop_s = baseline_forest(loaded, built.n_trees, sample, 1) * n / len(sample)
    exact_sample = np.sort(rng.choice(n, min(n, args.exact_sample), replace=False))
    exact_raw, judged, judged_found = baseline_exact(loaded, fitted, exact_sample, set(found_keys.tolist()))
    exact_s = exact_raw * n / len(exact_sample)

    row = {
        "items": n,
        "clusters": data.clusters,
        "families": data.families,
        "copies": int(len(data.copy_pos)),
        "copies_by_kind": dict(zip(KINDS, by_kind.tolist(), strict=True)),
        "generate_s": gen_s,
        "build_s": build_s,
        "n_trees": built.n_trees,
        "index_mib": built.size_bytes / 2**20,
        "fit": {k: fit[k] for k in ("white", "probe_recall", "hash_bits", "pairs", "probes")},
        "find_s": find_s,
        "find_reported_s": found.seconds,
        "hash_pairs_s": phase_s.get("hash_pairs"),
        "embedding_pairs_s": phase_s.get("embedding_pairs"),
        "rss_before_mib": _mib(before["VmRSS"]),
        "anon_before_mib": _mib(before["RssAnon"]),
        "peak_rss_mib": _mib(hwm) if hwm else _mib(peak_rss),
        "peak_rss_source": "VmHWM reset before find()" if hwm else "sampled VmRSS",
        "peak_rss_sampled_mib": _mib(peak_rss),
        "peak_anon_mib": _mib(peak_anon),
        "peaks_by_phase_mib": {k: [_mib(r), _mib(a)] for k, (r, a) in sampler.peaks.items()},
        "maxrss_process_mib": maxrss / 1024,
        "pairs": len(pairs),
        "planted_pairs_found": int(planted_pair.sum()),
        "groups": len(found.groups),
        "largest_group": max(sizes) if sizes else 0,
        "grouped_items": int(sum(sizes)),
        "pure_groups": pure,
        "recall": float(together.mean()),
        "recall_by_kind": {k: float(together[data.kind == i].mean()) for i, k in enumerate(KINDS)},
        "direct_pair_recall": float(direct.mean()),
        "precision": float(planted_pair.mean()) if len(pairs) else None,
        "forest_baseline_s": forest_s,
        "forest_loop_baseline_s": loop_s,
        "forest_baseline_sample": len(sample),
        "exact_baseline_s": exact_s,
        "exact_baseline_sample": len(exact_sample),
        "exact_judged_pairs": judged,
        "exact_judged_found": judged_found,
        "target_s": TARGETS.get(n),
    }
    print(
        f"  find() {find_s:.1f} s (its own figure {found.seconds:.1f} s): hash_pairs {row['hash_pairs_s']:.1f} s, "
        f"embedding_pairs {row['embedding_pairs_s']:.1f} s",
        flush=True,
    )
    print(
        f"  memory: before find RSS {row['rss_before_mib']:,.0f} MiB (anon {row['anon_before_mib']:,.0f}); "
        f"during find peak RSS {row['peak_rss_mib']:,.0f} MiB ({row['peak_rss_source']}; sampled "
        f"{row['peak_rss_sampled_mib']:,.0f}), peak anon {row['peak_anon_mib']:,.0f} MiB; "
        f"process maxrss {row['maxrss_process_mib']:,.0f} MiB (includes generation and build)",
        flush=True,
    )
    for phase, (r, a) in row["peaks_by_phase_mib"].items():
        print(f"    phase {phase:22s} peak RSS {r:,.0f} MiB, peak anon {a:,.0f} MiB", flush=True)
    print(
        f"  {len(pairs):,} pairs ({row['planted_pairs_found']:,} within planted families), {len(found.groups):,} groups "
        f"(largest {row['largest_group']}, {pure:,} of one family only), {row['grouped_items']:,} items grouped",
        flush=True,
    )
    print(
        f"  recall (copy and original in one group) {row['recall']:.4f}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in row["recall_by_kind"].items())
        + f"; as a direct pair {row['direct_pair_recall']:.4f}; precision proxy {row['precision']}",
        flush=True,
    )
    print(
        f"  baselines: forest queries alone {forest_s:.1f} s on {duplicates.THREADS} threads, {loop_s:.1f} s in a "
        f"one-thread loop (from {len(sample):,} items, extrapolated), "
        f"exact scan {exact_s:,.0f} s (from {len(exact_sample):,} items, extrapolated); "
        f"find / forest queries = {find_s / forest_s:.2f}x, exact scan / find = {exact_s / find_s:.1f}x",
        flush=True,
    )
    print(
        f"  on the exact sample: {judged:,} pairs judged near among exact neighbours, {judged_found:,} of them "
        f"found by find()",
        flush=True,
    )
    cache.evict(1)
    del loaded
    store.remove_versions(1, keep=set())
    return row


def _table(rows):
    print(
        "\n| items | build | find() | hash / embedding phase | peak RSS / anon during find | pairs | groups | recall | precision | forest queries, 2 threads / 1-thread loop | find / forest | exact scan / find | target |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        target = r["target_s"]
        met = "" if target is None else (f"<= {target:.0f} s: {'met' if r['find_s'] <= target else 'NOT met'}")
        print(
            f"| {r['items']:,} | {r['build_s']:.1f} s | **{r['find_s']:.1f} s** | {r['hash_pairs_s']:.1f} / "
            f"{r['embedding_pairs_s']:.1f} s | {r['peak_rss_mib']:,.0f} / {r['peak_anon_mib']:,.0f} MiB | "
            f"{r['pairs']:,} | {r['groups']:,} | {r['recall']:.4f} | {r['precision']:.4f} | "
            f"{r['forest_baseline_s']:.1f} / {r['forest_loop_baseline_s']:.1f} s | "
            f"{r['find_s'] / r['forest_baseline_s']:.2f}x | "
            f"{r['exact_baseline_s'] / r['find_s']:.0f}x | {met} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="gallery sizes, comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="data, hashes, probes and the build's seed")
    parser.add_argument("--scratch", default="/tmp", help="parent of the temporary folder (index files), deleted after")
    parser.add_argument("--families", type=float, default=0.01, help="share of items that get 1-3 planted copies")
    parser.add_argument("--noise", default="0.01,0.04", help="range of a copy's noise scale, per coordinate")
    parser.add_argument("--probe-images", type=int, default=24, help="held-out probe images (six edits each)")
    parser.add_argument("--baseline-sample", type=int, default=20_000, help="items the forest baseline queries")
    parser.add_argument("--exact-sample", type=int, default=500, help="items the exact-scan baseline scans for")
    parser.add_argument("--blas-threads", type=int, default=0, help="BLAS threads (0: the library's default)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    args.noise = tuple(float(x) for x in args.noise.split(","))
    sizes = [int(s) for s in args.sizes.split(",") if s]

    if args.blas_threads:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn

        threadpool_limits(args.blas_threads)
    scratch = Path(tempfile.mkdtemp(prefix="bench-dup-", dir=args.scratch))
    tempfile.tempdir = str(scratch)  # any other temporary file goes here too
    os.environ.setdefault("IMAGESEARCH_ENV_FILE", "/dev/null")
    os.environ.setdefault("DJANGO_SECRET_KEY", "x")
    os.environ["IMAGESEARCH_S3_BUCKET"] = ""  # index files stay in the scratch folder
    rows = []
    try:
        setup_django(scratch)
        from django.conf import settings
        from django.db import connections

        from gallery.analysis import duplicates

        assert Path(settings.IMAGESEARCH_INDEX_DIR) == scratch / "index", settings.IMAGESEARCH_INDEX_DIR

        def no_database(*_args):
            raise AssertionError("bench/duplicates.py must not touch the database")

        head = os.popen(f"git -C {ROOT} rev-parse --short HEAD").read().strip()
        dirty = os.popen(f"git -C {ROOT} status --short -- gallery/analysis/duplicates.py").read().strip()
        print(
            f"cpus={os.cpu_count()} load(1/5/15 min) at start={os.getloadavg()} seed={args.seed} "
            f"commit={head}{' (duplicates.py modified)' if dirty else ''} scratch={scratch}\n"
            f"find(): NEIGHBOURS_SEARCHED={duplicates.NEIGHBOURS_SEARCHED} CHUNK={duplicates.CHUNK} "
            f"THREADS={duplicates.THREADS} SEARCH_K_PER_TREE={duplicates.SEARCH_K_PER_TREE} "
            f"HASH_WINDOW={duplicates.HASH_WINDOW}",
            flush=True,
        )
        with connections["default"].execute_wrapper(no_database):
            for i, n in enumerate(sizes, 1):
                rows.append(one_size(n, args, i))
                print(f"  load after: {os.getloadavg()}", flush=True)
        never = all(c.connection is None for c in connections.all(initialized_only=True))
        print(f"\ndatabase: {'never connected' if never else 'CONNECTED (unexpected)'}")
        _table(rows)
        if args.json:
            Path(args.json).write_text(
                json.dumps({"load_end": os.getloadavg(), "sizes": rows}, indent=2, default=float)
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
