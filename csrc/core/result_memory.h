// Memory for large op results handed to JavaScript. A fresh typed array of tens of MB is zeroed
// and page-faulted in 4 KiB pages on every call: on a 2-core VM that cost 40 ms for a 21 MB unmerge
// whose arithmetic takes 3 ms. Results of at least kPooledResultBytes come from here instead:
// 2 MiB-aligned blocks advised as transparent huge pages, and blocks released by the garbage
// collector are kept (up to a cap) for the next result of the same size. Contents are undefined:
// every op writes every element of its result.
#pragma once
#include <cstddef>

namespace toma {

constexpr size_t kPooledResultBytes = size_t(1) << 20;

// At least `bytes` of memory; nullptr if the system has none.
void* result_alloc(size_t bytes);
// Returns a block from result_alloc(bytes) (same `bytes`).
void result_free(void* p, size_t bytes);
// Bytes held by the pool now (tests of memory growth read it).
size_t result_pool_bytes();

// Advises a large block as transparent huge pages (a no-op where the kernel has none).
void advise_huge_pages(void* p, size_t bytes);

}  // namespace toma
