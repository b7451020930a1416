// The least-bytes partition choice (kafka-go's LeastBytes): each message goes to the partition
// given the fewest bytes so far, so partitions fill evenly whatever the message sizes. Any
// two partitions differ by at most the largest message. Like kafka-go, it does not skip a
// partition whose leader is away: librdkafka holds such messages until a leader is back.
// Thread-safe: librdkafka may call the partitioner from its own threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace outbox::detail {

class LeastBytesBalancer {
  public:
    /// Picks the partition of 0..count-1 given the fewest bytes (the lowest number on a tie),
    /// and counts `bytes` against it. A change in the partition count starts afresh.
    std::int32_t pick(std::int32_t count, std::size_t bytes) {
        std::lock_guard lock(mutex_);
        if (given_.size() != static_cast<std::size_t>(count)) given_.assign(count, 0);
        std::int32_t best = 0;
        for (std::int32_t p = 1; p < count; ++p)
            if (given_[p] < given_[best]) best = p;
        given_[best] += bytes;
        return best;
    }

    /// Bytes given to each partition so far.
    std::vector<std::uint64_t> given() const {
        std::lock_guard lock(mutex_);
        return given_;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::uint64_t> given_;
};

}  // namespace outbox::detail
