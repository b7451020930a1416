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
    ~FixedBlockPool() { release(); }

    /// Room for one T (not constructed). Throws std::bad_alloc.
    void* allocate() {
        if (!free_) grow();
        FreeBlock* b = free_;
        OUTBOX_UNPOISON(b, block_size);
        free_ = b->next;
        return b;
    }

    /// `p` came from allocate() and holds no object any more.
    void deallocate(void* p) noexcept {
        auto* b = ::new (p) FreeBlock{free_};
        free_ = b;
        // A block's use after it was given back shows under AddressSanitizer.
        OUTBOX_POISON(b, block_size);
    }

    /// Every chunk back to the heap. Only when no block is in use.
    void release() noexcept {
        for (char* chunk : chunks_) ::operator delete(chunk);
        chunks_.clear();
        chunks_.shrink_to_fit();
        free_ = nullptr;
        next_chunk_blocks_ = first_chunk_blocks;
    }

    std::size_t chunks() const noexcept { return chunks_.size(); }

  private:
    struct FreeBlock {
        FreeBlock* next;
    };
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    static constexpr std::size_t block_size =
        (std::max(sizeof(T), sizeof(FreeBlock)) + alignof(T) - 1) / alignof(T) * alignof(T);
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
        char* chunk = static_cast<char*>(::operator new(n* block_size));
        chunks_.push_back(chunk);
        for (std::size_t i = n; i-- > 0;) deallocate(chunk + i * block_size);
        next_chunk_blocks_ = std::min(n * 2, largest_chunk_blocks);
    }

    std::vector<char*> chunks_;
    FreeBlock* free_ = nullptr;
    std::size_t next_chunk_blocks_ = first_chunk_blocks;
};

}  // namespace outbox::detail

#undef OUTBOX_POISON
#undef OUTBOX_UNPOISON
