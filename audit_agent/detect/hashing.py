"""The memory that hashing algorithms must hold: per-thread scratchpads of the CryptoNight family, RandomX and
Argon2 (CPU), and the Ethash/KawPow DAG as a function of its epoch (GPU). Pure tables and arithmetic, no I/O.

Scratchpads (one per hashing thread). xmrig encodes each algorithm's L3 scratchpad size in its id, one byte
as a power of two (xmrig/xmrig src/base/crypto/Algorithm.h: "1 byte: L3 memory as power of 2"); CnAlgo.h
gives the same as CN_MEMORY 0x200000 (2 MiB) with /2 for cn-lite, *2 for cn-heavy and /8 for cn-pico:
    2 MiB    cn/0, cn/1, cn/2, cn/r, cn/fast, cn/half, cn/xao, cn/rto, cn/rwz, cn/zls, cn/double, cn/ccx;
             rx/0 (RANDOMX_SCRATCHPAD_L3), rx/graft, rx/sfx, rx/yada, rx/salvium
    1 MiB    cn-lite/0, cn-lite/1; rx/wow; argon2/chukwav2
    4 MiB    cn-heavy/0, cn-heavy/tube, cn-heavy/xhv
    512 KiB  argon2/chukwa; cn/dark (GhostRider)
    256 KiB  cn-pico, cn-pico/tlo; rx/arq; argon2/wrkz
    128 KiB  cn/upx2 (left out: glibc serves every malloc from 128 KiB up with its own mapping, so this
             size is everywhere)
A CryptoNight thread may hash 1 to 5 ways at once (Algorithm::maxIntensity 5) and then holds L3 x ways;
xmrig's worker allocates `VirtualMemory(m_algorithm.l3() * N, ...)` (src/backend/cpu/CpuWorker.cpp), rounded
up to the 2 MiB huge-page size (VirtualMemory: m_size(alignToHugePageSize(size))), on huge pages when it can,
else with _mm_malloc, whose mapping carries one more page for malloc's header. Other miners allocate the
exact size. So one thread's region is L3 x ways, or that rounded up to 2 MiB, plus at most one page.

DAG (GPU). Ethash and the ProgPoW family (KawPow) share one dataset and light cache whose sizes grow with
the epoch (chfast/ethash lib/ethash/ethash.cpp and ethash-internal.hpp; the Ethash spec):
    dataset items (128 B) = largest prime below (2^30 + epoch * 2^23) / 128
    cache items (64 B)    = largest prime below (2^24 + epoch * 2^17) / 64
An epoch is 30000 blocks on Ethash, 60000 on Ethereum Classic after ECIP-1099 (etchash) and 7500 on
Ravencoin's KawPow. A GPU miner holds the dataset (and the cache) in device memory for the whole epoch.
"""
from __future__ import annotations

from functools import lru_cache

KiB = 1 << 10
MiB = 1 << 20
PAGE = 4 * KiB
HUGE_PAGE = 2 * MiB
MAX_WAYS = 5

# L3 scratchpad bytes -> the algorithms that need one of that size per hashing thread (xmrig Algorithm.h ids).
SCRATCHPADS: dict[int, tuple[str, ...]] = {
    4 * MiB: ("cn-heavy/0", "cn-heavy/tube", "cn-heavy/xhv"),
    2 * MiB: ("cn/0", "cn/1", "cn/2", "cn/r", "cn/half", "cn/fast", "cn/double", "cn/ccx", "rx/0", "rx/sfx",
              "rx/graft", "rx/yada"),
    1 * MiB: ("cn-lite/0", "cn-lite/1", "rx/wow", "argon2/chukwav2"),
    512 * KiB: ("argon2/chukwa", "cn/dark"),
    256 * KiB: ("cn-pico", "cn-pico/tlo", "rx/arq", "argon2/wrkz"),
}
# Families whose threads hash several ways at once (CryptoNight only: Algorithm::maxIntensity).
MULTI_WAY_PREFIX = "cn"

DATASET_INIT = 1 << 30
DATASET_GROWTH = 1 << 23
CACHE_INIT = 1 << 24
CACHE_GROWTH = 1 << 17
DATASET_ITEM = 128          # MIX_BYTES
CACHE_ITEM = 64             # HASH_BYTES
EPOCH_BLOCKS = {"ethash": 30000, "etchash": 60000, "kawpow": 7500}


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    divisor = 3
    while divisor * divisor <= n:
        if n % divisor == 0:
            return False
        divisor += 2
    return True


def _largest_prime_below(n: int) -> int:
    candidate = n - 1
    while not _is_prime(candidate):
        candidate -= 1
    return candidate


@lru_cache(maxsize=4096)
def dag_dataset_bytes(epoch: int) -> int:
    """Bytes of the Ethash/KawPow full dataset (the DAG) in an epoch: 1073739904 in epoch 0."""
    return _largest_prime_below((DATASET_INIT + epoch * DATASET_GROWTH) // DATASET_ITEM) * DATASET_ITEM


@lru_cache(maxsize=4096)
def dag_cache_bytes(epoch: int) -> int:
    """Bytes of the Ethash/KawPow light cache in an epoch: 16776896 in epoch 0."""
    return _largest_prime_below((CACHE_INIT + epoch * CACHE_GROWTH) // CACHE_ITEM) * CACHE_ITEM


def dag_epochs_fitting(used_bytes: int, overhead_bytes: int, max_epoch: int) -> tuple[int, int] | None:
    """(first, last) epoch whose dataset + cache fit in `used_bytes` with at most `overhead_bytes` more
    (a CUDA/OpenCL context and the miner's own buffers); None when no epoch up to `max_epoch` fits."""
    # dataset + cache grows by about 8.1 MiB an epoch: start from the estimate and look around it
    guess = max(0, (used_bytes - DATASET_INIT - CACHE_INIT) // (DATASET_GROWTH + CACHE_GROWTH))
    fitting = [e for e in range(max(0, guess - overhead_bytes // DATASET_GROWTH - 2), min(max_epoch, guess + 2) + 1)
               if 0 <= used_bytes - dag_dataset_bytes(e) - dag_cache_bytes(e) <= overhead_bytes]
    return (fitting[0], fitting[-1]) if fitting else None


@lru_cache(maxsize=1)
def scratchpad_sizes() -> dict[int, list[str]]:
    """{mapping size: the algorithms (with ways) one thread of which holds a mapping that size}."""
    table: dict[int, list[str]] = {}
    for l3, algorithms in sorted(SCRATCHPADS.items(), reverse=True):
        multi = any(a.startswith(MULTI_WAY_PREFIX) for a in algorithms)
        for n in range(1, (MAX_WAYS if multi else 1) + 1):
            label = f"{describe(l3)} x{n}" if n > 1 else describe(l3)
            exact = l3 * n
            for size in {exact, -(-exact // HUGE_PAGE) * HUGE_PAGE}:
                for with_header in (size, size + PAGE):
                    names = table.setdefault(with_header, [])
                    if label not in names:
                        names.append(label)
    return table


def describe(l3: int) -> str:
    """`cn-pico/rx/arq/argon2/wrkz (256 KiB)`: the families of one L3 size, short."""
    families = []
    for algorithm in SCRATCHPADS[l3]:
        family = algorithm.split("/")[0] if not algorithm.startswith("cn/") else "cn"
        if algorithm.startswith("argon2/") or algorithm.startswith("rx/") or algorithm == "cn/dark":
            family = algorithm
        if family not in families:
            families.append(family)
    return f"{', '.join(families[:4])} ({size_text(l3)})"


def size_text(size: int) -> str:
    return f"{size // MiB} MiB" if size % MiB == 0 else f"{size // KiB} KiB"


def algorithms_for_unit(size: int) -> list[str]:
    """What a per-thread region of `size` bytes is the scratchpad of ([] when nothing)."""
    return list(scratchpad_sizes().get(size, []))
