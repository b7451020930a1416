// Memory for many objects of one type, reused through a free list: a burst of allocations
// costs one heap allocation per chunk of blocks, and a block given back is the next one taken.
// libstdc++'s unsynchronized_pool_resource costs about as much as malloc per block (a search
// of its chunks on each deallocation). Not thread-safe. Private to the library.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define OUTBOX_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define OUTBOX_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define OUTBOX_POISON(p, n) ((void)(p), (void)(n))
#define OUTBOX_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace outbox::detail {

template <class T>
class FixedBlockPool {
  public:
    FixedBlockPool() = default;
    FixedBlockPool(const FixedBlockPool&) = delete;
    FixedBlockPool& operator=(const FixedBlockPool&) = delete;
    // Blocks still in use then (objects their owner leaked) go with their chunks.
    ~FixedBlockPool() {
        for (char* chunk : chunks_) ::operator delete(chunk);
    }

    /// Room for one T (not constructed). Throws std::bad_alloc.
    void* allocate() {
        if (!free_) grow();
        FreeBlock* b = free_;
        OUTBOX_UNPOISON(b, block_size);
        free_ = b->next;
        ++in_use_;
        return b;
    }

    /// `p` came from allocate() and holds no object any more.
    void deallocate(void* p) noexcept {
        --in_use_;
        push_free(p);
    }

    /// Every chunk back to the heap, when no block is in use (else nothing, and false).
    bool release_if_unused() noexcept {
        if (in_use_ != 0) return false;
        for (char* chunk : chunks_) ::operator delete(chunk);
        chunks_.clear();  // its room is kept: a destination idle between messages reuses it
        free_ = nullptr;
        next_chunk_blocks_ = first_chunk_blocks;
        return true;
    }

    std::size_t chunks() const noexcept { return chunks_.size(); }
    std::size_t in_use() const noexcept { return in_use_; }

  private:
    struct FreeBlock {
        FreeBlock* next;
    };
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    static constexpr std::size_t block_alignment = std::max(alignof(T), alignof(FreeBlock));
    static constexpr std::size_t block_size =
        (std::max(sizeof(T), sizeof(FreeBlock)) + block_alignment - 1) / block_alignment *
        block_alignment;
    static constexpr std::size_t first_chunk_blocks = 4;
    static constexpr std::size_t largest_chunk_blocks = 64;

    // Chunks double from four blocks up to 64: a destination that sends a message now and
    // then keeps little, a burst takes an allocation per 64 messages, and the chunks stay
    // small enough to share the heap with the bodies (chunks of 256 raised the peak RSS of
    // kafka_bench by about a third).
    void grow() {
        // Room first (doubling), so that the chunk cannot leak should this throw.
        if (chunks_.size() == chunks_.capacity())
            chunks_.reserve(std::max<std::size_t>(8, 2 * chunks_.size()));
        const std::size_t n = next_chunk_blocks_;
        char* chunk = static_cast<char*>(::operator new(block_size* n));
        chunks_.push_back(chunk);
        for (std::size_t i = n; i-- > 0;) push_free(chunk + i * block_size);
        next_chunk_blocks_ = std::min(n * 2, largest_chunk_blocks);
    }

    void push_free(void* p) noexcept {
        free_ = ::new (p) FreeBlock{free_};
        // A block's use after it was given back shows under AddressSanitizer.
        OUTBOX_POISON(p, block_size);
    }

    std::vector<char*> chunks_;
    FreeBlock* free_ = nullptr;
    std::size_t in_use_ = 0;
    std::size_t next_chunk_blocks_ = first_chunk_blocks;
};

}  // namespace outbox::detail

#undef OUTBOX_POISON
#undef OUTBOX_UNPOISON
